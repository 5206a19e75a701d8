"""The ``video`` kind: an upload transcoded to MP4 renditions and a thumbnail (handler: :mod:`.job`),
served on ``/media/videos/``."""

from __future__ import annotations

from jobpulse.kinds import Kind, Upload
from jobpulse.media.options import VideoOptions

__all__ = ["KIND"]

KIND = Kind(
    name="video",
    label="video",
    resource="videos",
    description="Transcode a video to web-ready MP4 renditions and take a thumbnail.",
    queue="media",
    # Any container ffprobe reads is accepted; these are the names the CLI recognises as videos.
    input=Upload(
        suffixes=(
            ".mp4",
            ".mov",
            ".mkv",
            ".webm",
            ".avi",
            ".m4v",
            ".mpg",
            ".mpeg",
            ".wmv",
            ".flv",
            ".3gp",
            ".ts",
        ),
        max_bytes="video_max_upload_bytes",
        content_types=("video/*",),
    ),
    options=VideoOptions,
    handler="jobpulse.media.job:VideoProcessing",
    result="duration_seconds, width, height, codecs, renditions and thumbnail with signed download links",
)
