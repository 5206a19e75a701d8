"""Where a video's outputs live: one folder per video under the data dir, shared by workers and the API.

The folders and files are this user's alone (0700 and 0600), set explicitly rather than left to the
worker's umask: they are other people's videos.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from jobpulse.settings import Settings

__all__ = ["THUMBNAIL", "fresh_media_folder", "media_folder", "private_file"]

THUMBNAIL = "thumbnail.jpg"
_FOLDER_MODE, _FILE_MODE = 0o700, 0o600


def media_folder(settings: Settings, video_id: str) -> Path:
    """The folder of a video's renditions and thumbnail (``media/{id}/``)."""
    return settings.media_dir / video_id


def fresh_media_folder(settings: Settings, video_id: str) -> Path:
    """An empty, private ``media/{id}/`` (an earlier, interrupted attempt's files are removed)."""
    folder = media_folder(settings, video_id)
    shutil.rmtree(folder, ignore_errors=True)
    settings.media_dir.mkdir(mode=_FOLDER_MODE, parents=True, exist_ok=True)
    settings.media_dir.chmod(_FOLDER_MODE)
    folder.mkdir(mode=_FOLDER_MODE)
    folder.chmod(_FOLDER_MODE)  # mkdir's mode is filtered by the umask; chmod's is not
    return folder


def private_file(path: Path) -> Path:
    """Make a file ffmpeg wrote (with the umask's mode) readable and writable by this user only."""
    path.chmod(_FILE_MODE)
    return path
