"""The DB-backed record bodies (``GET /jobs/{id}/`` and listings)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from jobpulse.db.models import Job, Tracked, Video
from jobpulse.db.repository import as_utc
from jobpulse.states import State

__all__ = ["job_record", "links", "video_record"]


def _iso(moment: datetime | None) -> str | None:
    moment = as_utc(moment)
    if moment is None:
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _record(record: Tracked, kind: str, result: dict[str, Any] | None) -> dict[str, Any]:
    state = State(record.state)
    return {
        "id": record.id,
        "kind": kind,
        "state": state.value,
        "terminal": state.terminal,
        "percent": record.percent,
        "error_reason": record.error_reason,
        "options": record.options,
        "input": {
            "filename": record.input_filename or None,  # None for a JSON job
            "size_bytes": record.input_size_bytes,
            "content_type": record.input_content_type,
            "data": record.input_data,  # a JSON job's input document; None for an upload
        },
        "result": result,
        "created_at": _iso(record.created_at),
        "started_at": _iso(record.started_at),
        "finished_at": _iso(record.finished_at),
        "retry_of": record.retry_of,  # the FAILED job this one retries, if it is a retry
    }


def job_record(job: Job) -> dict[str, Any]:
    """The DB record of a job, as the contract shapes it."""
    return _record(job, job.kind, job.result)


def video_record(video: Video, link: Callable[[str], str]) -> dict[str, Any]:
    """The DB record of a video. ``result`` is null until the probe has read the video; renditions and
    the thumbnail appear once it is READY, each with a download URL (``link`` makes it from a file name).
    """
    result: dict[str, Any] | None = None
    if video.duration_seconds is not None:
        ready = video.state == State.READY.value
        result = {
            "duration_seconds": video.duration_seconds,
            "width": video.width,
            "height": video.height,
            "video_codec": video.video_codec,
            "audio_codec": video.audio_codec,
            "frame_rate": video.frame_rate,
            "renditions": [
                {**rendition, "url": link(rendition["file"])} for rendition in (video.renditions or [])
            ]
            if ready
            else [],
            "thumbnail": {"url": link(video.thumbnail)} if ready and video.thumbnail else None,
        }
    return _record(video, video.kind, result)


def links(base: str, job_id: str) -> dict[str, str]:
    """Where a client finds a job's record, progress and event stream (root-relative: proxy-proof)."""
    return {
        "self": f"{base}/{job_id}/",
        "progress": f"{base}/{job_id}/progress/",
        "stream": f"{base}/{job_id}/progress/stream/",
    }
