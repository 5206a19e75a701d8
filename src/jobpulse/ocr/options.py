"""The options a client sends with an OCR job, validated before the job is queued."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from jobpulse.options import parse_json_options

__all__ = ["OcrOptions", "parse_ocr_options"]


class OcrOptions(BaseModel):
    """How to judge an OCR result. Strict: ``"0.9"`` is refused rather than guessed at."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    min_confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    """Under this mean word confidence the job ends REVIEW_REQUIRED; None means the deployment's default."""


def parse_ocr_options(raw: str | None, default_min_confidence: float) -> OcrOptions:
    """Parse the JSON options a client sent, filling in the default threshold, so that the job record
    shows the one used. Raises :class:`~jobpulse.errors.InvalidOptions` with a readable reason."""
    options = parse_json_options(OcrOptions, raw, "OCR")
    if options.min_confidence is None:
        options = options.model_copy(update={"min_confidence": default_min_confidence})
    return options
