"""Where a video's outputs live: one folder per video under the data dir, shared by workers and the API."""

from __future__ import annotations

from pathlib import Path

from jobpulse.settings import Settings

__all__ = ["THUMBNAIL", "media_folder"]

THUMBNAIL = "thumbnail.jpg"


def media_folder(settings: Settings, video_id: str) -> Path:
    """The folder of a video's renditions and thumbnail (``media/{id}/``)."""
    return settings.media_dir / video_id
