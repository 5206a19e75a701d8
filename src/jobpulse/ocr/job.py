"""The ``ai_inference`` job: OCR of one image, on the CPU, handed to the GPU queue when it is too big.

Three tasks run the same job (docs/architecture.md, "OCR and the GPU queue"):

- ``jobpulse.ai_inference`` on ``ai``: the first attempt, on the CPU within a budget (pixels, seconds).
  Beyond it the job is handed off: FALLBACK_TO_GPU, a message to ``ai-gpu``, and a second one back to
  ``ai`` that runs ``ocr_gpu_wait_seconds`` later;
- ``jobpulse.ai_inference.gpu`` on ``ai-gpu``: onnxruntime's CUDA provider when the machine has it (else
  the CPU provider, and the result says so), no budget;
- ``jobpulse.ai_inference.cpu_after_gpu_wait`` on ``ai``: the CPU without a budget, so no job waits
  forever for a GPU. Whichever of the last two comes second finds the job running (its lease is taken:
  it retries later) or ended (the message is dropped).

Progress: ``decoding`` (0-5%), ``detecting`` (5-35%), ``recognizing`` (35-95%, by text region); when
that reading finds no text or only doubtful text, ``enhancing``, then ``detecting`` and ``recognizing``
again on the enhanced image, over what is left up to 100% (:mod:`jobpulse.ocr.reading`).
"""

from __future__ import annotations

import time

from jobpulse.handler import HandOff, JobRun, Outcome, Requeue
from jobpulse.ocr.engine import CUDA_PROVIDER, Device, OcrEngine, engine_for
from jobpulse.ocr.image import ImageInfo, ImageLimits, decode_image, probe_image
from jobpulse.ocr.kind import CPU_AFTER_GPU_WAIT_TASK, CPU_QUEUE, GPU_QUEUE, GPU_TASK
from jobpulse.ocr.options import OcrOptions
from jobpulse.ocr.reading import read_page
from jobpulse.ocr.result import Attempt, judge, result_body
from jobpulse.progress.reporter import Reporter
from jobpulse.settings import Settings
from jobpulse.states import State

__all__ = ["OcrJob", "after_gpu_wait", "on_cpu", "on_gpu", "resume"]

NO_CUDA_NOTE = "This worker of the GPU queue has no CUDA execution provider: the job ran on its CPU."
WAITED_NOTE = "No GPU worker took the job within {wait:g} s: it ran on the CPU."


class _OverBudget(Exception):
    """The CPU attempt passed its budget; ``why`` says which, in words."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class _Budget:
    """The first CPU attempt's limits: pixels (checked before decoding) and seconds (between steps)."""

    def __init__(self, settings: Settings) -> None:
        self.max_pixels = settings.ocr_cpu_max_pixels
        self.seconds = settings.ocr_cpu_time_budget_seconds
        self.started = time.monotonic()

    def check_pixels(self, info: ImageInfo) -> None:
        if info.pixels > self.max_pixels:
            raise _OverBudget(
                f"The image ({info.width:,} x {info.height:,}) is larger than a CPU worker takes "
                f"({self.max_pixels / 1_000_000:g} megapixels)"
            )

    def check_time(self) -> None:
        if time.monotonic() - self.started > self.seconds:
            raise _OverBudget(f"Reading the image takes longer than a CPU worker's {self.seconds:g} s budget")


class _Progress:
    """A reading's progress, written through the job's reporter."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    def __call__(
        self,
        stage: str,
        percent: float,
        message: str,
        *,
        done: int | None = None,
        total: int | None = None,
        show_now: bool = False,
    ) -> None:
        if done is None and total is None:  # a step that counts no regions (a second pass's start)
            self.reporter.current = self.reporter.total = None
        self.reporter.update(done, total, percent=percent, stage=stage, message=message)
        if show_now:
            self.reporter.flush()  # a long step follows: show its stage before it starts


def _unlimited() -> None:
    """No time budget (the GPU queue's attempt, and the CPU's after the wait)."""


class OcrJob:
    """Reads the text of one image; ``attempt`` says which of the three tasks this instance serves."""

    def __init__(self, attempt: Attempt) -> None:
        self.attempt = attempt
        self.device = Device.GPU if attempt is Attempt.GPU else Device.CPU

    def run(self, job: JobRun) -> Outcome:
        settings = job.settings
        reporter = job.reporter
        started = time.perf_counter()
        budget = _Budget(settings) if self.attempt is Attempt.CPU else None
        options: OcrOptions = job.options
        min_confidence = (
            settings.ocr_min_confidence if options.min_confidence is None else options.min_confidence
        )
        limits = ImageLimits.from_settings(settings)
        path = job.input_path
        try:
            reporter.update(percent=0.0, stage="decoding", message="Reading the image")
            info = probe_image(path, limits)
            if budget is not None:
                budget.check_pixels(info)
            info, pixels = decode_image(path, limits)
            decoded = time.perf_counter()
            loading = time.monotonic()
            engine = engine_for(self.device, settings.ocr_threads)
            if budget is not None:
                budget.started += time.monotonic() - loading  # the model's first load is not the image's
                budget.check_time()
            reading = read_page(
                engine,
                pixels,
                min_confidence,
                progress=_Progress(reporter),
                check_time=budget.check_time if budget is not None else _unlimited,
            )
            del pixels
        except _OverBudget as over:
            raise self._hand_off(settings, over.why) from None
        lines = reading.lines
        verdict = judge(lines, min_confidence)
        timings = {
            "decode_seconds": round(decoded - started, 3),
            "detect_seconds": round(reading.seconds("detect"), 3),
            "classify_seconds": round(reading.seconds("classify"), 3),
            "recognize_seconds": round(reading.seconds("recognize"), 3),
            "enhance_seconds": round(reading.enhance_seconds, 3),
            "total_seconds": round(time.perf_counter() - started, 3),
        }
        result = result_body(
            lines,
            min_confidence,
            image=info.to_dict(),
            reading=reading.to_dict(),
            engine=engine.describe(),
            execution_provider=engine.provider,
            device="gpu" if engine.provider == CUDA_PROVIDER else "cpu",
            attempt=self.attempt.value,
            note=self._note(engine, settings),
            timings=timings,
        )
        if verdict.state is State.REJECTED_BAD_INPUT:
            return Outcome(verdict.state, result=result, error_reason=verdict.reason)
        return Outcome(verdict.state, result=result, message=verdict.message)

    def _note(self, engine: OcrEngine, settings: Settings) -> str | None:
        if self.attempt is Attempt.GPU and engine.provider != CUDA_PROVIDER:
            return NO_CUDA_NOTE
        if self.attempt is Attempt.CPU_AFTER_GPU_WAIT:
            return WAITED_NOTE.format(wait=settings.ocr_gpu_wait_seconds)
        return None

    @staticmethod
    def _hand_off(settings: Settings, why: str) -> HandOff:
        """FALLBACK_TO_GPU: a message for the GPU queue, and one that runs it on the CPU after the wait."""
        wait = settings.ocr_gpu_wait_seconds
        return HandOff(
            State.FALLBACK_TO_GPU,
            resume(settings),
            message=f"{why}: waiting for a GPU worker (or the CPU again after {wait:g} s)",
            stage="waiting_for_gpu",
        )


def resume(settings: Settings) -> list[Requeue]:
    """The messages that run a job in FALLBACK_TO_GPU: the GPU queue's attempt, and the CPU's after
    ``ocr_gpu_wait_seconds`` (the reaper sends them again when they may be lost)."""
    return [
        Requeue(GPU_TASK, GPU_QUEUE),
        Requeue(CPU_AFTER_GPU_WAIT_TASK, CPU_QUEUE, countdown=settings.ocr_gpu_wait_seconds),
    ]


# The kind's three tasks' handlers (ocr/kind.py names them). The result lives in the record and the
# upload is removed at the end: nothing to discard.
on_cpu = OcrJob(Attempt.CPU)
on_gpu = OcrJob(Attempt.GPU)
after_gpu_wait = OcrJob(Attempt.CPU_AFTER_GPU_WAIT)
