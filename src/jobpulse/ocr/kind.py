"""The ``ai_inference`` kind: OCR of one image, on the CPU, handed to the GPU queue when it is too big
(handler: :mod:`.job`). Its wire name is the contract's; its code is the ``ocr`` package; its queues are
``ai`` and ``ai-gpu``."""

from __future__ import annotations

from jobpulse.kinds import Kind, Task, Upload
from jobpulse.ocr.options import OcrOptions

__all__ = ["CPU_AFTER_GPU_WAIT_TASK", "CPU_QUEUE", "GPU_QUEUE", "GPU_TASK", "KIND"]

CPU_QUEUE = "ai"
# Jobs the CPU gave up on wait here for a worker started with `--queues ai-gpu`.
GPU_QUEUE = "ai-gpu"
GPU_TASK = "jobpulse.ai_inference.gpu"
CPU_AFTER_GPU_WAIT_TASK = "jobpulse.ai_inference.cpu_after_gpu_wait"

KIND = Kind(
    name="ai_inference",
    label="OCR",
    description="Read the text of an image (OCR); doubtful results end REVIEW_REQUIRED for a person.",
    queue=CPU_QUEUE,
    input=Upload(
        suffixes=(".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff"),
        max_bytes="ocr_max_upload_bytes",
        content_types=("image/png", "image/jpeg", "image/webp", "image/tiff"),
    ),
    options=OcrOptions,
    options_defaults={"min_confidence": "ocr_min_confidence"},
    handler="jobpulse.ocr.job:on_cpu",
    tasks=(
        Task(GPU_TASK, GPU_QUEUE, "jobpulse.ocr.job:on_gpu"),
        Task(CPU_AFTER_GPU_WAIT_TASK, CPU_QUEUE, "jobpulse.ocr.job:after_gpu_wait"),
    ),
    resume="jobpulse.ocr.job:resume",
    requires=("onnxruntime", "rapidocr"),
    result="text, lines, words with boxes and confidence, mean confidence, the engine and timings",
)
