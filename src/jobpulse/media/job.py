"""The video job: probe the upload, transcode it to MP4 renditions, and take a thumbnail.

One bar from 0 to 100: probing takes the first 2%, the renditions the next 95% (a stage each), and the
thumbnail the last 3%. A rendition's share of the bar is its cost, modelled as its output pixels plus
:data:`_DECODE_SHARE` of the source's pixels (every rendition decodes the whole source; measured here on
a 720p source, 360p took 6.3 s and 720p 14.3 s, which this model reproduces). The ETA comes from the
speed measured so far in those units, so it holds across renditions of different sizes.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from jobpulse.db.repository import VideoRepository
from jobpulse.errors import BadInput, JobCancelled
from jobpulse.handler import JobRun, Outcome
from jobpulse.media.ffmpeg import (
    FFmpegError,
    FFmpegProgress,
    run_ffmpeg,
    thumbnail_command,
    transcode_command,
)
from jobpulse.media.files import THUMBNAIL, fresh_media_folder, media_folder, private_file
from jobpulse.media.options import VideoOptions
from jobpulse.media.probe import ProbeLimits, VideoInfo, probe_video
from jobpulse.media.renditions import Rendition, plan_renditions
from jobpulse.progress.reporter import Reporter
from jobpulse.settings import Settings
from jobpulse.states import State

__all__ = ["VideoProcessing"]

log = logging.getLogger(__name__)

_THUMBNAIL_WIDTH = 640
_PROBED, _TRANSCODED = 2.0, 97.0  # percent at the end of each phase
_DECODE_SHARE = 0.35  # the cost of decoding a source pixel, against encoding an output pixel
# ffmpeg stops early on a truncated file, with exit status 0: an output this much shorter is refused
# (its last out_time trails the duration by about a frame, more with some encoders' delay).
_COMPLETE, _SLACK_US = 0.9, 500_000
_UNDECODABLE = (
    "The video could not be converted: the file is damaged or uses a format that cannot be decoded."
)


class _Bar:
    """Turns ffmpeg's position in the current rendition into the job's one bar, with an ETA."""

    def __init__(self, reporter: Reporter, renditions: list[Rendition], info: VideoInfo) -> None:
        self.reporter = reporter
        self.renditions = renditions
        self.duration_us = info.duration_seconds * 1_000_000
        decode = _DECODE_SHARE * info.width * info.height
        self.costs = [rendition.pixels + decode for rendition in renditions]
        self.total = sum(self.costs)
        self.done = 0.0  # the cost of the renditions already made
        self.started = time.monotonic()
        self.index = 0

    def begin(self, index: int) -> None:
        self.index = index
        rendition = self.renditions[index]
        self.reporter.update(
            0,
            round(self.duration_us / 1000),
            percent=self._percent(self.done),
            stage=f"transcoding_{rendition.name}",
            message=f"Converting to {rendition.name} ({index + 1} of {len(self.renditions)})",
        )

    def _percent(self, work: float) -> float:
        return _PROBED + (_TRANSCODED - _PROBED) * work / self.total

    def __call__(self, block: FFmpegProgress | None) -> None:
        if block is None:
            self.reporter.update()  # nothing new; the write still tells us about a cancel
            return
        work = self.done + self.costs[self.index] * min(1.0, block.out_time_us / self.duration_us)
        elapsed = time.monotonic() - self.started
        eta = (self.total - work) * elapsed / work if work > 0 else None
        self.reporter.update(
            round(block.out_time_us / 1000),
            percent=self._percent(work),
            eta_seconds=None if eta is None else eta + 1.0,  # and about a second for the thumbnail
        )

    def end(self) -> None:
        self.done += self.costs[self.index]


class VideoProcessing:
    """Turns one uploaded video into web-ready renditions and a thumbnail."""

    def run(self, video: JobRun) -> Outcome:
        settings = video.settings
        reporter = video.reporter
        videos: VideoRepository = video.repository
        options: VideoOptions = video.options
        source = video.input_path
        reporter.update(percent=0.0, stage="probing", message="Reading the video")
        limits = ProbeLimits.from_settings(settings)
        info = probe_video(settings.ffprobe_binary, source, limits, settings.video_probe_timeout_seconds)
        if not videos.set_state(video.id, State.PROCESSING, **info.columns()):
            raise JobCancelled()
        names = options.renditions or list(settings.video_renditions)
        renditions = plan_renditions(names, info.width, info.height)

        folder = fresh_media_folder(settings, video.id)  # private: 0700, its files 0600
        bar = _Bar(reporter, renditions, info)
        made: list[dict[str, Any]] = []
        for index, rendition in enumerate(renditions):
            bar.begin(index)
            target = folder / rendition.file_name
            last = self._ffmpeg(
                transcode_command(settings.ffmpeg_binary, source, target, rendition, settings.video_preset),
                bar,
                settings,
            )
            if last is None or last.out_time_us < _COMPLETE * info.duration_seconds * 1_000_000 - _SLACK_US:
                raise BadInput("The video ends early: the file is incomplete or damaged.")
            bar.end()
            made.append(rendition.record(private_file(target).stat().st_size, info.duration_seconds))

        reporter.update(percent=_TRANSCODED, stage="thumbnail", message="Taking a thumbnail")
        self._thumbnail(source, folder / THUMBNAIL, info, settings, reporter)
        return Outcome(
            State.READY,
            columns={"renditions": made, "thumbnail": THUMBNAIL},
            message="Ready: " + ", ".join(r.name for r in renditions),
        )

    def _ffmpeg(self, command: list[str], bar: _Bar, settings: Settings) -> FFmpegProgress | None:
        try:
            return run_ffmpeg(command, bar, stall_seconds=settings.video_stall_seconds)
        except FFmpegError as exc:
            log.warning("ffmpeg failed (%d): %s", exc.returncode, exc.stderr)
            if exc.returncode < 0 or "No space left" in exc.stderr:
                raise  # killed, or our disk: not the file's fault (FAILED, with the generic reason)
            raise BadInput(_UNDECODABLE) from None

    def _thumbnail(
        self, source: Path, target: Path, info: VideoInfo, settings: Settings, reporter: Reporter
    ) -> None:
        at = min(info.duration_seconds * 0.1, 10.0)
        width = min(_THUMBNAIL_WIDTH, info.width) // 2 * 2
        stall = settings.video_stall_seconds
        for start in (at, 0.0):  # a seek past the last key frame can yield nothing: then from the start
            command = thumbnail_command(settings.ffmpeg_binary, source, target, start, width)
            try:
                run_ffmpeg(command, lambda _block: reporter.update(), stall_seconds=stall)
            except FFmpegError as exc:
                log.warning("thumbnail failed (%d): %s", exc.returncode, exc.stderr)
                continue
            if target.is_file() and private_file(target).stat().st_size > 0:
                return
        raise BadInput(_UNDECODABLE)

    def discard(self, video: JobRun) -> None:
        """Remove the renditions and thumbnail of a video that did not become READY."""
        shutil.rmtree(media_folder(video.settings, video.id), ignore_errors=True)
