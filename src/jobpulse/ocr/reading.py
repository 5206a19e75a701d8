"""Reading one page: the image as sent, then, when that finds no text or only doubtful text, an enhanced
copy (:mod:`~jobpulse.ocr.enhancement`); the better of the two readings is kept.

A clean page is read once, exactly as before: the second look costs nothing unless the first reading
is empty or its mean confidence is under the job's threshold. "Better" is the reading with more
confidently read characters (the sum over its lines of characters times confidence), so a second
reading that finds all the text wins over a first that found a few words, and a confident first
reading is not traded for a longer, doubtful one.

When no region reads above rapidocr's line score (0.5), the lines under it are kept (the tentative
reading): text-like structure was found, so the job goes to a person (REVIEW_REQUIRED, as its mean
confidence is under the threshold) rather than being rejected. Only a page where no pass finds any
readable region has no lines, and is rejected.

Progress (the caller's reporter): ``detecting`` at 5%, ``recognizing`` 35-95% by region; for a second
look, ``enhancing``, ``detecting`` and ``recognizing`` again, over what is left (from 35% when the first
reading found no region, from 95% after a doubtful one) up to 100%.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from jobpulse.ocr.engine import OcrEngine, ReadLine
from jobpulse.ocr.enhancement import enhanced
from jobpulse.ocr.result import mean_confidence, plural

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["Pass", "Progress", "Reading", "needs_second_look", "read_page"]

ORIGINAL, ENHANCED = "original", "enhanced"


class Progress(Protocol):
    """Where a reading stands; ``show_now`` before a long step, so its stage shows while it runs."""

    def __call__(
        self,
        stage: str,
        percent: float,
        message: str,
        *,
        done: int | None = None,
        total: int | None = None,
        show_now: bool = False,
    ) -> None: ...


def _no_progress(stage: str, percent: float, message: str, **_: Any) -> None:
    """A reading nobody watches."""


def _no_deadline() -> None:
    """A reading without a time budget."""


@dataclass(frozen=True, slots=True)
class _Span:
    """The percents of one pass: detection starts at ``detect``, recognition runs ``recognize``-``end``."""

    detect: float
    recognize: float
    end: float

    @classmethod
    def after(cls, start: float) -> _Span:
        """A second pass, over what is left from ``start`` to 100%."""
        rest = 100.0 - start
        return cls(start + 0.1 * rest, start + 0.5 * rest, 100.0)


FIRST = _Span(5.0, 35.0, 95.0)


@dataclass(frozen=True, slots=True)
class Pass:
    """One reading of one image: which (``original`` or ``enhanced``), its lines and its regions."""

    image: str
    lines: list[ReadLine]
    regions: int
    seconds: dict[str, float]

    @property
    def quality(self) -> float:
        """Confidently read characters: the sum over lines of characters times confidence."""
        return sum(len(line.text.strip()) * line.confidence for line in self.lines)

    def summary(self) -> dict[str, object]:
        return {
            "image": self.image,
            "regions": self.regions,
            "lines": len(self.lines),
            "mean_confidence": mean_confidence(self.lines),
        }


@dataclass(frozen=True, slots=True)
class Reading:
    """The passes made and the one kept."""

    chosen: Pass
    passes: list[Pass]
    enhance_seconds: float = 0.0

    @property
    def lines(self) -> list[ReadLine]:
        return self.chosen.lines

    def seconds(self, step: str) -> float:
        """Time spent in ``step`` (detect, classify, recognize) over every pass."""
        return sum(one.seconds.get(step, 0.0) for one in self.passes)

    def to_dict(self) -> dict[str, object]:
        """The job result's ``reading``."""
        return {"image": self.chosen.image, "passes": [one.summary() for one in self.passes]}


def needs_second_look(lines: list[ReadLine], min_confidence: float) -> bool:
    """No text read, or a mean confidence under the threshold."""
    mean = mean_confidence(lines)
    return mean is None or mean < min_confidence


def _read(
    engine: OcrEngine,
    image: npt.NDArray[np.uint8],
    name: str,
    span: _Span,
    progress: Progress,
    check_time: Callable[[], None],
) -> Pass:
    what = "the enhanced image" if name == ENHANCED else "the image"
    progress("detecting", span.detect, f"Finding the text in {what}", show_now=True)
    page = engine.detect(image)
    check_time()
    total = page.regions
    progress(
        "recognizing",
        span.recognize,
        f"Found {plural(total, 'text region')}",
        done=0,
        total=total,
        show_now=True,
    )
    for done in engine.recognize(page):
        if done < total:
            check_time()
        progress(
            "recognizing",
            span.recognize + (span.end - span.recognize) * done / max(total, 1),
            f"Recognized {done:,} of {plural(total, 'text region')}",
            done=done,
            total=total,
        )
    lines = engine.lines(page) or engine.lines(page, min_score=0.0)
    return Pass(name, lines, page.regions, dict(page.seconds))


def read_page(
    engine: OcrEngine,
    image: npt.NDArray[np.uint8],
    min_confidence: float,
    progress: Progress = _no_progress,
    check_time: Callable[[], None] = _no_deadline,
) -> Reading:
    """Read ``image`` (BGR), with a second look at an enhanced copy when the first reading is poor.

    ``check_time`` is called between steps and may raise to stop the reading (the CPU budget).
    """
    first = _read(engine, image, ORIGINAL, FIRST, progress, check_time)
    if not needs_second_look(first.lines, min_confidence):
        return Reading(first, [first])
    check_time()
    start = FIRST.recognize if first.regions == 0 else FIRST.end
    progress(
        "enhancing", start, "The text is hard to read: enhancing the image for a second look", show_now=True
    )
    started = time.perf_counter()
    better = enhanced(image)
    enhance_seconds = time.perf_counter() - started
    if better is None:  # a flat page: nothing to bring out
        return Reading(first, [first], enhance_seconds)
    second = _read(engine, better, ENHANCED, _Span.after(start), progress, check_time)
    chosen = second if second.quality > first.quality else first
    return Reading(chosen, [first, second], enhance_seconds)
