"""The job lifecycle as the API drives it, for every kind of job: queue a submission (undone if any
step fails, so no job is left that will never run), read live progress, cancel."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from fastapi.concurrency import run_in_threadpool

from jobpulse.api.deps import Services
from jobpulse.db.models import Tracked
from jobpulse.db.repository import NewJob
from jobpulse.errors import Conflict, JobpulseError, ServiceUnavailable
from jobpulse.progress.record import ProgressUpdate, progress_body, progress_from_job
from jobpulse.states import JobKind, State
from jobpulse.worker.app import TASKS

__all__ = ["cancel", "enqueue", "progress_of", "queue_job"]


async def progress_of(services: Services, job_id: str) -> dict[str, Any] | None:
    """The live progress body of a job, or None when Redis holds no record of it."""
    raw = await services.store.read(job_id)
    if raw is None:
        return None
    return progress_body(job_id, raw, int(time.time() * 1000), services.policy)


def enqueue(services: Services, kind: JobKind, job_id: str) -> None:
    """Send the job's Celery message; 503 if the broker cannot take it."""
    name, queue = TASKS[kind]
    try:
        services.celery.send_task(
            name,
            args=[job_id],
            queue=queue,
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
        )
    except Exception as exc:  # kombu raises its own and the transport's errors
        raise ServiceUnavailable(
            "The job queue is unreachable; try again shortly.", code="broker_unavailable"
        ) from exc


async def queue_job(services: Services, new: NewJob, kind: JobKind) -> dict[str, Any]:
    """DB row, PENDING record, Celery message; undone if a later step fails, so no job is left unrun."""
    records = services.records(kind)
    await run_in_threadpool(records.create, new)
    try:
        await services.store.write(
            new.id,
            ProgressUpdate(State.PENDING, percent=0.0, message="Waiting for a worker"),
            owner=new.owner,
            kind=new.kind,
            create=True,
        )
        body = await progress_of(services, new.id)
        await run_in_threadpool(enqueue, services, kind, new.id)
    except JobpulseError:
        await run_in_threadpool(records.delete, new.id)
        with contextlib.suppress(ServiceUnavailable):  # else the record expires on its own
            await services.store.delete(new.id)
        raise
    assert body is not None
    return body


async def cancel(services: Services, job: Tracked, kind: JobKind) -> dict[str, Any]:
    """Cancel ``job`` of ``kind`` (DB first, then Redis); the worker notices at its next progress report."""
    if State(job.state).terminal:
        raise Conflict(f"The job already ended ({job.state}).", code="already_terminal")
    try:
        last = await progress_of(services, job.id) or {}
    except ServiceUnavailable:
        last = {}
    percent = last.get("percent")
    done = await run_in_threadpool(
        services.records(kind).finish, job.id, State.CANCELLED, owner=job.owner, percent=percent
    )
    if not done:
        raise Conflict("The job already ended.", code="already_terminal")
    update = ProgressUpdate(
        State.CANCELLED,
        percent=percent,
        current=last.get("current"),
        total=last.get("total"),
        message="Cancelled by its owner",
    )
    try:
        await services.store.write(job.id, update, owner=job.owner, kind=kind.value)
        body = await progress_of(services, job.id)
    except ServiceUnavailable:
        body = None  # the DB has it; the worker stops when it next finds it cancelled
    return body or progress_from_job(job.id, kind.value, update, services.policy)
