"""The DB-backed record bodies (``GET /jobs/{id}/`` and listings)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jobpulse.db.models import Job
from jobpulse.db.repository import as_utc
from jobpulse.states import State

__all__ = ["job_record", "links"]


def _iso(moment: datetime | None) -> str | None:
    moment = as_utc(moment)
    if moment is None:
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_record(job: Job) -> dict[str, Any]:
    """The DB record of a job, as the contract shapes it."""
    state = State(job.state)
    return {
        "id": job.id,
        "kind": job.kind,
        "state": state.value,
        "terminal": state.terminal,
        "percent": job.percent,
        "error_reason": job.error_reason,
        "options": job.options,
        "input": {
            "filename": job.input_filename,
            "size_bytes": job.input_size_bytes,
            "content_type": job.input_content_type,
        },
        "result": job.result,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
    }


def links(base: str, job_id: str) -> dict[str, str]:
    """Where a client finds a job's record, progress and event stream (root-relative: proxy-proof)."""
    return {
        "self": f"{base}/{job_id}/",
        "progress": f"{base}/{job_id}/progress/",
        "stream": f"{base}/{job_id}/progress/stream/",
    }
