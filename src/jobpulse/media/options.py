"""The options a client sends with a video upload, validated before the video is queued."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jobpulse.media.renditions import LADDER
from jobpulse.options import parse_json_options

__all__ = ["VideoOptions", "parse_video_options"]


class VideoOptions(BaseModel):
    """Which renditions to make (names from the ladder); None means the deployment's default."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    renditions: list[str] | None = Field(default=None, min_length=1, max_length=len(LADDER))

    @field_validator("renditions")
    @classmethod
    def _known(cls, names: list[str] | None) -> list[str] | None:
        if names is None:
            return None
        unknown = [name for name in names if name not in LADDER]
        if unknown:
            raise ValueError(f"unknown rendition {unknown[0]!r}; expected some of: {', '.join(LADDER)}")
        return list(dict.fromkeys(names))


def parse_video_options(raw: str | None) -> VideoOptions:
    """Parse the JSON options of a video upload; raises InvalidOptions naming each bad field."""
    return parse_json_options(VideoOptions, raw, "video")
