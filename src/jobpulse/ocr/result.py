"""The OCR result kept in the job record (``result``), and the review that resolves a REVIEW_REQUIRED job.

Shape (docs/api.md, "OCR jobs")::

    {"text": "line one\\nline two", "mean_confidence": 0.97, "min_confidence": 0.8,
     "lines": [{"text", "confidence", "box": [[x, y] x4], "words": <count>}],
     "words": [{"text", "confidence", "box", "line": <index into lines>}],
     "image": {"format", "width", "height"},
     "engine": {"name", "version", "onnxruntime", "models"}, "execution_provider": "CPUExecutionProvider",
     "device": "cpu" | "gpu", "attempt": "cpu" | "gpu" | "cpu_after_gpu_wait", "note": str | null,
     "reading": {"image": "original" | "enhanced",
                 "passes": [{"image", "regions", "lines", "mean_confidence"}]},
     "timings": {"decode_seconds", "detect_seconds", "classify_seconds", "recognize_seconds",
                 "enhance_seconds", "total_seconds"},
     "review": {"decision", "text", "reviewed_at"}}      (only once reviewed)
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from jobpulse.ocr.engine import ReadLine
from jobpulse.states import State

__all__ = [
    "NO_TEXT",
    "REJECTED_ON_REVIEW",
    "Attempt",
    "ReviewRequest",
    "Verdict",
    "judge",
    "mean_confidence",
    "plural",
    "result_body",
    "reviewed_result",
    "text_of",
]

REJECTED_ON_REVIEW = "The owner rejected the recognized text on review."
NO_TEXT = "No text was found in the image. If it does contain text, send a sharper or higher-contrast scan."


class Attempt(enum.StrEnum):
    """Which run of a job produced the result (docs/architecture.md, "OCR and the GPU queue")."""

    CPU = "cpu"  # the first attempt, on a CPU worker within its budget
    GPU = "gpu"  # a worker of the GPU queue, after the CPU gave up
    CPU_AFTER_GPU_WAIT = "cpu_after_gpu_wait"  # no GPU worker took it in time: the CPU, without a budget


def plural(count: int, noun: str) -> str:
    """``1 line``, ``2 lines``."""
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def text_of(lines: Sequence[ReadLine]) -> str:
    """The page's text: its lines in reading order, one per line."""
    return "\n".join(line.text for line in lines)


def mean_confidence(lines: Sequence[ReadLine]) -> float | None:
    """The mean confidence of the words (of the lines, where no word boxes came out); None for no text."""
    scores = [word.confidence for line in lines for word in line.words]
    if not scores:
        scores = [line.confidence for line in lines]
    return round(sum(scores) / len(scores), 5) if scores else None


@dataclass(frozen=True, slots=True)
class Verdict:
    """How an OCR run ends: its state, and the reason when it is rejected."""

    state: State
    reason: str | None = None
    message: str | None = None


def judge(lines: Sequence[ReadLine], min_confidence: float) -> Verdict:
    """SUCCESS, REVIEW_REQUIRED under the threshold, or REJECTED_BAD_INPUT when nothing was read."""
    mean = mean_confidence(lines)
    if mean is None:
        return Verdict(State.REJECTED_BAD_INPUT, NO_TEXT)
    words = sum(len(line.words) for line in lines)
    read = f"Read {plural(words, 'word')} in {plural(len(lines), 'line')}"
    if mean < min_confidence:
        return Verdict(
            State.REVIEW_REQUIRED,
            message=f"{read}; mean confidence {mean:.0%} is under {min_confidence:.0%}: please review",
        )
    return Verdict(State.SUCCESS, message=f"{read}, mean confidence {mean:.0%}")


def result_body(lines: Sequence[ReadLine], min_confidence: float, **details: Any) -> dict[str, Any]:
    """The ``result`` of an OCR job; ``details`` adds image, engine, provider, attempt and timings."""
    words = [
        {"text": word.text, "confidence": word.confidence, "box": word.box, "line": index}
        for index, line in enumerate(lines)
        for word in line.words
    ]
    return {
        "text": text_of(lines),
        "mean_confidence": mean_confidence(lines),
        "min_confidence": min_confidence,
        "lines": [
            {"text": line.text, "confidence": line.confidence, "box": line.box, "words": len(line.words)}
            for line in lines
        ],
        "words": words,
        **details,
    }


class ReviewRequest(BaseModel):
    """The body of ``POST /jobs/{id}/review/``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    decision: Literal["approve", "reject"]
    text: str | None = Field(default=None, max_length=100_000)
    """A corrected text, kept beside the model's (which is never overwritten)."""

    @property
    def state(self) -> State:
        """Where the review moves the job."""
        return State.SUCCESS if self.decision == "approve" else State.REJECTED_BAD_INPUT

    @property
    def error_reason(self) -> str | None:
        return REJECTED_ON_REVIEW if self.decision == "reject" else None


def reviewed_result(result: dict[str, Any] | None, review: ReviewRequest, at: datetime) -> dict[str, Any]:
    """``result`` with the review beside the model's text."""
    moment = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        **(result or {}),
        "review": {"decision": review.decision, "text": review.text, "reviewed_at": moment},
    }
