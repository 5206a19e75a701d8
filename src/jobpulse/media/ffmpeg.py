"""Running ffmpeg: the command lines jobpulse uses, and a runner that reads ``-progress pipe:1``.

The runner starts ffmpeg in its own process group and kills the whole group when anything stops it (a
cancel raised by the progress callback, a stall, a time limit, a worker shutdown), so no ffmpeg outlives
its job. Where util-linux's ``setpriv`` is on PATH (every Debian and Ubuntu), ffmpeg also gets the
parent-death signal: if the worker process is killed outright (SIGKILL, the OOM killer), before any
``finally`` can run, the kernel kills its ffmpeg too. ffmpeg's stderr goes to the worker's log, never to
the user.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from jobpulse.errors import JobFailed
from jobpulse.media.containers import confined_input
from jobpulse.media.renditions import Rendition

__all__ = ["FFmpegError", "FFmpegProgress", "run_ffmpeg", "thumbnail_command", "transcode_command"]

log = logging.getLogger(__name__)

_TICK_SECONDS = 0.5  # how often the callback hears "no news" while ffmpeg is silent


class FFmpegError(Exception):
    """ffmpeg exited with an error; ``stderr`` is its last words (for the log, not for users)."""

    def __init__(self, returncode: int, stderr: str) -> None:
        super().__init__(f"ffmpeg exited with {returncode}")
        self.returncode = returncode
        self.stderr = stderr


@dataclass(frozen=True, slots=True)
class FFmpegProgress:
    """One ``-progress`` block: how far the output is, and how fast it goes (x real time)."""

    out_time_us: int
    speed: float | None
    done: bool  # the block ffmpeg writes last (progress=end)


def _common(ffmpeg: str) -> list[str]:
    return [ffmpeg, "-hide_banner", "-nostdin", "-y", "-loglevel", "error"]


def _output(target: Path) -> str:
    """An output path that cannot read as a protocol or an option."""
    return f"file:{target.resolve()}"


def transcode_command(
    ffmpeg: str, source: Path, target: Path, rendition: Rendition, preset: str
) -> list[str]:
    """H.264/AAC MP4 at the rendition's size, bitrate-capped, with the index up front (``+faststart``)
    so a browser starts playing before the download ends. The source is read as one file of an accepted
    container (:func:`~jobpulse.media.containers.confined_input`)."""
    kbps = rendition.video_kbps
    return [
        *_common(ffmpeg),
        *confined_input(source),
        *("-map", "0:v:0", "-map", "0:a:0?", "-sn", "-dn"),
        *("-vf", f"scale={rendition.width}:{rendition.height}:flags=bicubic,setsar=1"),
        *("-c:v", "libx264", "-preset", preset, "-crf", "23", "-pix_fmt", "yuv420p"),
        *("-maxrate", f"{kbps}k", "-bufsize", f"{2 * kbps}k", "-profile:v", "high"),
        *("-c:a", "aac", "-b:a", f"{rendition.audio_kbps}k", "-ac", "2"),
        *("-movflags", "+faststart", "-f", "mp4"),
        *("-progress", "pipe:1", "-stats_period", str(_TICK_SECONDS), "-nostats"),
        _output(target),
    ]


def thumbnail_command(ffmpeg: str, source: Path, target: Path, at_seconds: float, width: int) -> list[str]:
    """A JPEG of a representative frame: ffmpeg's ``thumbnail`` filter picks the frame most like its
    neighbours out of a short run starting at ``at_seconds`` (not a black or a transition frame)."""
    return [
        *_common(ffmpeg),
        *confined_input(source, "-ss", f"{at_seconds:.3f}"),
        *("-vf", f"thumbnail=30,scale={width}:-2"),
        *("-frames:v", "1", "-q:v", "3", "-f", "image2", "-update", "1"),
        _output(target),
    ]


def _parse_speed(value: str | None) -> float | None:
    if not value or not value.endswith("x"):
        return None
    try:
        speed = float(value[:-1])
    except ValueError:
        return None
    return speed if speed > 0 else None


def _parse_microseconds(value: str | None) -> int:
    """``out_time_us`` (``N/A`` before the first frame; negative for a while with some inputs)."""
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0


@functools.cache
def _orphan_guard() -> tuple[str, ...]:
    """``setpriv --pdeathsig KILL --``: the command prefix that makes the kernel kill ffmpeg when the
    worker process dies (it execs ffmpeg in place, so the pid, the group and the name stay ffmpeg's)."""
    setpriv = shutil.which("setpriv")
    return (setpriv, "--pdeathsig", "KILL", "--") if setpriv else ()


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run_ffmpeg(
    argv: list[str],
    on_progress: Callable[[FFmpegProgress | None], None],
    *,
    stall_seconds: float,
) -> FFmpegProgress | None:
    """Run ffmpeg, calling ``on_progress`` with each ``-progress`` block, and with None every half second
    while nothing new came (so the callback can notice a cancel even then). Returns the last block.

    ``out_time`` that does not advance for ``stall_seconds`` means ffmpeg is stuck: it is killed and
    :class:`~jobpulse.errors.JobFailed` raised. A non-zero exit raises :class:`FFmpegError`. Whatever
    ends the run, the process group is gone when this returns or raises.
    """
    with (
        tempfile.TemporaryFile() as stderr,
        subprocess.Popen(
            [*_orphan_guard(), *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,  # its own process group, killed as one
        ) as process,
    ):
        try:
            last = _follow(process, on_progress, stall_seconds)
            returncode = process.wait()
        finally:
            _kill_group(process)
        if returncode != 0:
            stderr.seek(0)
            raise FFmpegError(returncode, stderr.read()[-4000:].decode(errors="replace"))
    return last


def _follow(
    process: subprocess.Popen[bytes],
    on_progress: Callable[[FFmpegProgress | None], None],
    stall_seconds: float,
) -> FFmpegProgress | None:
    assert process.stdout is not None
    fd = process.stdout.fileno()
    os.set_blocking(fd, False)
    buffer = b""
    fields: dict[str, str] = {}
    last: FFmpegProgress | None = None
    advanced = time.monotonic()
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            news = False
            if selector.select(_TICK_SECONDS):
                chunk = os.read(fd, 65536)
                if not chunk:
                    return last  # ffmpeg closed its output: it is exiting
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    key, _, value = line.decode(errors="replace").strip().partition("=")
                    fields[key] = value
                    if key != "progress":
                        continue
                    block = FFmpegProgress(
                        _parse_microseconds(fields.get("out_time_us")),
                        _parse_speed(fields.get("speed")),
                        value == "end",
                    )
                    if last is None or block.out_time_us > last.out_time_us or block.done:
                        advanced = time.monotonic()
                    last = block
                    fields = {}
                    news = True
                    on_progress(block)
            if not news:
                if time.monotonic() - advanced > stall_seconds:
                    log.warning("ffmpeg made no progress for %.0f s; killing it", stall_seconds)
                    raise JobFailed(
                        "Processing the video stopped making progress and was stopped. "
                        "Please try again; if it happens again, the file may be damaged."
                    )
                on_progress(None)
