"""What ffprobe says about an upload, checked against the limits before any transcoding starts.

:func:`parse_probe` is pure (ffprobe's JSON in, :class:`VideoInfo` or :class:`~jobpulse.errors.BadInput`
out), so every rejection reason is unit-tested without a file; :func:`probe_video` runs ffprobe, confined
to the accepted containers and to the one uploaded file (:mod:`jobpulse.media.containers`).
"""

from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobpulse.errors import BadInput
from jobpulse.media.containers import confined_input, is_accepted, refused_demuxer
from jobpulse.settings import Settings

__all__ = ["NOT_ACCEPTED", "ProbeLimits", "VideoInfo", "parse_probe", "probe_command", "probe_video"]

log = logging.getLogger(__name__)

UNREADABLE = "The file is not a video we can read: it is damaged, incomplete, or not a video at all."
NOT_ACCEPTED = (
    "The file is a playlist or a format jobpulse does not accept; upload the video file itself "
    "(MP4, WebM, MOV, MKV, AVI, MPEG, FLV, OGV, WMV or GIF)."
)
STILL_IMAGE = "The file is a still image, not a video."
NO_PICTURE = "The file has sound but no picture: upload a video, not an audio file."
# Demuxers that read a single picture: an image renamed .mp4 probes as one of these.
_IMAGE_FORMATS = ("image2", "_pipe")
# Audio-only demuxers, so a song refused by the whitelist is still told it has no picture.
_AUDIO_FORMATS = frozenset({"mp3", "wav", "flac", "aac", "aiff", "ac3", "eac3", "amr", "wv", "ape"})


@dataclass(frozen=True, slots=True)
class ProbeLimits:
    """What a video may be (every limit is a setting)."""

    min_duration_seconds: float
    max_duration_seconds: float
    max_dimension: int
    max_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ProbeLimits:
        return cls(
            min_duration_seconds=settings.video_min_duration_seconds,
            max_duration_seconds=settings.video_max_duration_seconds,
            max_dimension=settings.video_max_dimension,
            max_bytes=settings.video_max_upload_bytes,
        )


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """The video as it will be shown: display width and height (rotation applied), duration, codecs."""

    duration_seconds: float
    width: int
    height: int
    video_codec: str
    audio_codec: str | None
    frame_rate: float | None
    container: str

    def columns(self) -> dict[str, Any]:
        """The ``videos`` table's columns for what the probe found."""
        return {
            "duration_seconds": round(self.duration_seconds, 3),
            "width": self.width,
            "height": self.height,
            "video_codec": self.video_codec,
            "audio_codec": self.audio_codec,
            "frame_rate": self.frame_rate,
        }


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and number not in (float("inf"), float("-inf")) else None


def _rate(value: Any) -> float | None:
    """ffprobe's frame rates are fractions ("30000/1001"); "0/0" means unknown."""
    if not isinstance(value, str) or "/" not in value:
        return _number(value)
    top, _, bottom = value.partition("/")
    numerator, denominator = _number(top), _number(bottom)
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


def _rotation(stream: dict[str, Any]) -> int:
    for side in stream.get("side_data_list") or []:
        angle = _number(side.get("rotation"))
        if angle is not None:
            return int(angle)
    return int(_number((stream.get("tags") or {}).get("rotate")) or 0)


def _seconds(value: float) -> str:
    if value < 60:
        return f"{value:.1f} s"
    hours, rest = divmod(round(value), 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min {rest % 60} s"


def _is_image(container: str) -> bool:
    return any(container.endswith(marker) or container == marker for marker in _IMAGE_FORMATS)


def parse_probe(data: dict[str, Any], size_bytes: int, limits: ProbeLimits) -> VideoInfo:
    """Check ffprobe's ``-show_format -show_streams`` JSON; raise BadInput with a plain reason.

    The container must be an accepted one even though ffprobe ran with the whitelist (defence in depth:
    a playlist's ``format_name`` is ``hls``, whatever its segments are)."""
    if size_bytes > limits.max_bytes:
        raise BadInput(f"The video is larger than the limit of {limits.max_bytes // 1024**2:,} MB.")
    fmt = data.get("format") or {}
    streams = data.get("streams") or []
    container = str(fmt.get("format_name") or "")
    if not container or not streams:
        raise BadInput(UNREADABLE)
    # A cover picture in a music file is a "video" stream too; it is not a video.
    videos = [
        s
        for s in streams
        if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")
    ]
    if not videos:
        if any(s.get("codec_type") == "audio" for s in streams):
            raise BadInput(NO_PICTURE)
        raise BadInput("The file has no video track.")
    if _is_image(container):
        raise BadInput(STILL_IMAGE)
    if not is_accepted(container):
        raise BadInput(NOT_ACCEPTED)
    video = videos[0]
    width, height = int(_number(video.get("width")) or 0), int(_number(video.get("height")) or 0)
    if width <= 0 or height <= 0:
        raise BadInput(UNREADABLE)
    if abs(_rotation(video)) % 180 == 90:
        width, height = height, width
    duration = _number(fmt.get("duration")) or _number(video.get("duration"))
    if duration is None:
        raise BadInput("The video's length cannot be read: the file may be damaged or incomplete.")
    if duration < limits.min_duration_seconds:
        raise BadInput(
            f"The video is too short ({duration:.2f} s); the minimum is {limits.min_duration_seconds:g} s."
        )
    if duration > limits.max_duration_seconds:
        raise BadInput(
            f"The video is too long ({_seconds(duration)}); "
            f"the maximum is {_seconds(limits.max_duration_seconds)}."
        )
    if max(width, height) > limits.max_dimension:
        raise BadInput(
            f"The video's resolution ({width}x{height}) is over the limit of "
            f"{limits.max_dimension}x{limits.max_dimension}."
        )
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    return VideoInfo(
        duration_seconds=duration,
        width=width,
        height=height,
        video_codec=str(video.get("codec_name") or "unknown"),
        audio_codec=str(audio.get("codec_name") or "unknown") if audio else None,
        frame_rate=_rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate")),
        container=container,
    )


def probe_command(ffprobe: str, path: Path) -> list[str]:
    """ffprobe's command line for an upload: JSON of the format and the streams, of ``path`` alone."""
    return [
        *(ffprobe, "-v", "error", "-print_format", "json", "-show_format", "-show_streams"),
        *confined_input(path),
    ]


def _refusal(stderr: str) -> str:
    """The reason to give when ffprobe refused the file: a demuxer off the whitelist, or unreadable."""
    demuxer = refused_demuxer(stderr)
    if demuxer is None:
        return UNREADABLE
    if _is_image(demuxer):
        return STILL_IMAGE
    if _AUDIO_FORMATS.intersection(demuxer.split(",")):
        return NO_PICTURE
    return NOT_ACCEPTED


def probe_video(ffprobe: str, path: Path, limits: ProbeLimits, timeout: float) -> VideoInfo:
    """Run ffprobe on ``path`` and check what it found. ffprobe's own words go to the log only."""
    try:
        done = subprocess.run(
            probe_command(ffprobe, path),
            capture_output=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        log.warning("ffprobe timed out after %.0f s on %s", timeout, path)
        raise BadInput(UNREADABLE) from None
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace")
        log.info("ffprobe refused %s: %s", path, stderr[-500:])
        raise BadInput(_refusal(stderr))
    try:
        data = json.loads(done.stdout)
    except ValueError:
        raise BadInput(UNREADABLE) from None
    return parse_probe(data, path.stat().st_size, limits)
