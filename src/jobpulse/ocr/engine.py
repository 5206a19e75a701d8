"""rapidocr on onnxruntime, loaded once per worker process and device, run in stages.

rapidocr's one call (``engine(image)``) detects text regions, classifies their orientation and recognizes
them, with no way to report in between. :class:`OcrEngine` runs the same steps (rapidocr's own methods, in
its order, with its batches) one at a time, so a job can report "recognized 12 of 40 regions" and check its
time budget between batches; the numbers it reads are the same as rapidocr's single call.

The models are the ones rapidocr's wheel ships; they are named explicitly, so rapidocr never tries to
download one (it would when a default model file is missing or fails its checksum).
"""

from __future__ import annotations

import enum
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "CPU_PROVIDER",
    "CUDA_PROVIDER",
    "Device",
    "OcrEngine",
    "Page",
    "ReadLine",
    "ReadWord",
    "bundled_models",
    "cuda_available",
    "engine_for",
]

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"
# rapidocr's default models (its config.yaml), shipped inside its wheel.
_MODEL_FILES = {
    "Det": "PP-OCRv6_det_small.onnx",
    "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    "Rec": "PP-OCRv6_rec_small.onnx",
}


class Device(enum.StrEnum):
    """Where an attempt wants to run: the CPU, or a GPU through CUDA when this machine has one."""

    CPU = "cpu"
    GPU = "gpu"


def cuda_available() -> bool:
    """Whether onnxruntime here can run on CUDA (the onnxruntime-gpu build, with a GPU)."""
    import onnxruntime  # type: ignore[import-untyped]

    return CUDA_PROVIDER in onnxruntime.get_available_providers()


def bundled_models() -> dict[str, Path]:
    """The model files inside rapidocr's package, by stage (Det, Cls, Rec)."""
    import importlib.util

    spec = importlib.util.find_spec("rapidocr")
    if spec is None or spec.origin is None:
        raise RuntimeError("rapidocr is not installed")
    folder = Path(spec.origin).parent / "models"
    return {stage: folder / name for stage, name in _MODEL_FILES.items()}


@dataclass(frozen=True, slots=True)
class ReadWord:
    """A recognized word: its text, confidence (0..1) and box (four x, y corners in image pixels)."""

    text: str
    confidence: float
    box: list[list[int]]


@dataclass(frozen=True, slots=True)
class ReadLine:
    """A recognized text region (a line): its text, confidence, box and words."""

    text: str
    confidence: float
    box: list[list[int]]
    words: list[ReadWord]


@dataclass
class Page:
    """One image on its way through the engine; the steps fill it in."""

    image: Any  # BGR pixels, as decoded
    prepared: Any = None
    op_record: dict[str, Any] = field(default_factory=dict)
    detection: Any = None  # rapidocr's TextDetOutput
    crops: list[Any] = field(default_factory=list)
    classification: Any = None  # rapidocr's TextClsOutput
    upright: list[Any] = field(default_factory=list)  # crops after orientation
    texts: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    word_info: list[Any] = field(default_factory=list)
    recognized: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def regions(self) -> int:
        """How many text regions detection found."""
        return len(self.crops)


def _box(points: Any) -> list[list[int]]:
    return [[round(float(x)), round(float(y))] for x, y in points]


class OcrEngine:
    """rapidocr with the bundled models on one device. Build it with :func:`engine_for`."""

    def __init__(self, device: Device, threads: int = 0) -> None:
        from rapidocr import RapidOCR

        started = time.perf_counter()
        models = bundled_models()
        missing = [str(path) for path in models.values() if not path.is_file()]
        if missing:
            raise RuntimeError(f"rapidocr's bundled models are missing: {', '.join(missing)}")
        self.device = device
        use_cuda = device is Device.GPU and cuda_available()
        params: dict[str, Any] = {
            "Global.log_level": "error",
            "Global.return_word_box": True,
            "EngineConfig.onnxruntime.use_cuda": use_cuda,
            **{f"{stage}.model_path": str(path) for stage, path in models.items()},
        }
        if threads > 0:
            params["EngineConfig.onnxruntime.intra_op_num_threads"] = threads
            params["EngineConfig.onnxruntime.inter_op_num_threads"] = 1
        self._ocr = cast(Any, RapidOCR(params=params))
        # Load the three sessions now (rapidocr loads them on first use), so a job's time is its own.
        self._ocr._load_det_model()
        self._ocr._load_cls_model()
        self._ocr._load_rec_model()
        self.provider: str = self._ocr.text_det.session.session.get_providers()[0]
        self.batch_size: int = int(self._ocr.cfg.Rec.rec_batch_num)
        self.min_line_score: float = float(self._ocr.cfg.Global.text_score)
        self.load_seconds = time.perf_counter() - started

    def describe(self) -> dict[str, Any]:
        """The engine, its versions and models, for the job's result."""
        return {
            "name": "rapidocr",
            "version": metadata.version("rapidocr"),
            "onnxruntime": metadata.version("onnxruntime"),
            "models": dict(_MODEL_FILES),
        }

    # -- the steps, in rapidocr's order ------------------------------------------------------------

    def detect(self, image: npt.NDArray[np.uint8]) -> Page:
        """Find the text regions (the longest single step) and turn them upright."""
        from rapidocr.main import RapidOCRError

        page = Page(image)
        started = time.perf_counter()
        page.prepared, page.op_record = self._ocr.preprocess_img(image)
        try:
            page.crops, page.detection = self._ocr.detect_and_crop(page.prepared, page.op_record)
        except RapidOCRError:  # rapidocr's way of saying "no text regions"
            page.crops = []
        page.seconds["detect"] = time.perf_counter() - started
        if page.crops:
            started = time.perf_counter()
            page.upright, page.classification = self._ocr.cls_and_rotate(page.crops)
            page.seconds["classify"] = time.perf_counter() - started
        page.texts = [""] * page.regions
        page.scores = [0.0] * page.regions
        page.word_info = [None] * page.regions
        return page

    def recognize(self, page: Page) -> Iterator[int]:
        """Recognize the regions batch by batch, yielding how many are done after each batch.

        The batches are rapidocr's: regions sorted by aspect ratio, ``rec_batch_num`` at a time.
        """
        import numpy as np

        started = time.perf_counter()
        ratios = np.array([crop.shape[1] / float(crop.shape[0]) for crop in page.upright])
        order = [int(i) for i in np.argsort(ratios)]
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            output = self._ocr.recognize_txt([page.upright[i] for i in batch])
            for n, index in enumerate(batch):
                page.texts[index] = output.txts[n]
                page.scores[index] = float(output.scores[n])
                page.word_info[index] = output.word_results[n]
            page.recognized += len(batch)
            page.seconds["recognize"] = time.perf_counter() - started
            yield page.recognized

    def lines(self, page: Page, min_score: float | None = None) -> list[ReadLine]:
        """The recognized lines with their words, in reading order, in the image's pixel coordinates.

        Like rapidocr, regions that read as blank or score under ``min_score`` (by default its
        ``text_score``, 0.5) are dropped.
        """
        floor = self.min_line_score if min_score is None else min_score
        if not page.regions:
            return []
        from rapidocr.ch_ppocr_rec import TextRecOutput
        from rapidocr.utils.process_img import map_boxes_to_original, map_img_to_original

        height, width = page.image.shape[:2]
        boxes = map_boxes_to_original(page.detection.boxes, page.op_record, height, width)
        ratio = page.op_record["preprocess"]
        crops = map_img_to_original(page.crops, ratio["ratio_h"], ratio["ratio_w"])
        recognized: Any = cast(Any, TextRecOutput)(
            imgs=page.upright,
            txts=tuple(page.texts),
            scores=list(page.scores),
            word_results=tuple(page.word_info),
        )
        word_lines = self._ocr.cal_rec_boxes(crops, boxes, recognized, False).word_results
        aligned = len(word_lines) == page.regions  # rapidocr skips empty crops; never seen, but checked
        lines: list[ReadLine] = []
        for index, (text, score) in enumerate(zip(page.texts, page.scores, strict=True)):
            if not text.strip() or score < floor:
                continue
            words = [
                ReadWord(str(word), round(float(confidence), 5), _box(box))
                for word, confidence, box in (word_lines[index] if aligned else ())
                if box is not None and str(word).strip()
            ]
            lines.append(ReadLine(text, round(score, 5), _box(boxes[index]), words))
        return lines


_engines: dict[tuple[int, Device, int], OcrEngine] = {}
_lock = threading.Lock()


def engine_for(device: Device, threads: int = 0) -> OcrEngine:
    """This process's engine for ``device``, loaded on first use (~0.5-1.5 s) and kept.

    Keyed by process id too: a forked child never uses sessions its parent made.
    """
    key = (os.getpid(), device, threads)
    engine = _engines.get(key)
    if engine is None:
        with _lock:
            engine = _engines.get(key)
            if engine is None:
                engine = _engines[key] = OcrEngine(device, threads)
    return engine
