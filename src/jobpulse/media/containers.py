"""The containers jobpulse accepts, and the input options that confine ffprobe and ffmpeg to them.

An upload is one file and must never name another. FFmpeg's default is the opposite: it guesses the
demuxer from the content, and some demuxers open what the file names (``hls`` and ``dash`` playlists,
``concat``/``ffconcat`` lists, ``image2`` sequences, ``tty``, mov's external data references) through any
protocol (``file``, ``http``, ``subfile``, ``data:``...). So every ffprobe and ffmpeg run on an upload
gets, before its ``-i``:

- ``-format_whitelist`` with the demuxers of real video containers (:data:`ACCEPTED_DEMUXERS`): any other
  demuxer is refused by ``avformat_open_input`` right after probing, before it reads a header or opens
  anything ("Format not on whitelist"). None of those demuxers follows a reference to another file;
  mov could (its ``enable_drefs`` option), and that option is off unless asked for (FFmpeg's default,
  guarded by a test; passing ``-enable_drefs 0`` is not possible, ffmpeg refuses an option that the
  chosen demuxer lacks);
- ``-protocol_whitelist file``: the input is read through the ``file`` protocol only;
- the input as ``file:`` plus an absolute path, so no part of it can read as a protocol or an option.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["ACCEPTED_DEMUXERS", "FORMAT_WHITELIST", "confined_input", "is_accepted", "refused_demuxer"]

# Demuxer names exactly as ``ffmpeg -demuxers`` (FFmpeg 5.1) lists them and ffprobe reports them as
# ``format_name``. FFmpeg matches a whitelist with ``av_match_list``: a demuxer is allowed when any of its
# comma-separated names equals any name in the list (so "mp4" alone would admit "mov,mp4,m4a,3gp,3g2,mj2").
ACCEPTED_DEMUXERS: tuple[str, ...] = (
    "mov,mp4,m4a,3gp,3g2,mj2",  # MP4, MOV, M4V, 3GP
    "matroska,webm",  # MKV, WebM
    "avi",
    "mpegts",  # .ts, .m2ts
    "mpeg",  # MPEG program streams: .mpg, .vob
    "flv",
    "ogg",  # .ogv
    "asf",  # WMV
    "gif",  # animated GIF
)
_NAMES = frozenset(name for demuxer in ACCEPTED_DEMUXERS for name in demuxer.split(","))
FORMAT_WHITELIST = ",".join(sorted(_NAMES))

# How libavformat says it refused a demuxer; the log line's prefix is the demuxer's name.
_REFUSED = re.compile(r"\[([\w,]+) @ 0x[0-9a-fA-F]+\] Format not on whitelist")


def confined_input(path: Path, *options: str) -> list[str]:
    """``-format_whitelist ... -protocol_whitelist file [options] -i file:/absolute/path``."""
    return [
        *("-format_whitelist", FORMAT_WHITELIST, "-protocol_whitelist", "file"),
        *options,
        *("-i", f"file:{path.resolve()}"),
    ]


def is_accepted(format_name: str) -> bool:
    """Whether ffprobe's ``format_name`` is an accepted container (the same rule as ``av_match_list``)."""
    return any(name in _NAMES for name in format_name.split(","))


def refused_demuxer(stderr: str) -> str | None:
    """The demuxer FFmpeg refused for not being on the whitelist, from its log; None if it refused none."""
    match = _REFUSED.search(stderr)
    return match.group(1) if match else None
