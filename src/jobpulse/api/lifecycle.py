"""The job lifecycle as the API drives it, for every kind of job: queue a submission (undone if any
step fails, so no job is left that will never run), read live progress, cancel, delete, retry."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

from fastapi.concurrency import run_in_threadpool

from jobpulse.api.deps import Services
from jobpulse.broker import send_job
from jobpulse.db.models import Tracked
from jobpulse.db.repository import NewJob
from jobpulse.errors import Conflict, JobpulseError, ServiceUnavailable
from jobpulse.ids import new_job_id
from jobpulse.kinds import Kind, Upload
from jobpulse.progress.layout import DELETED_MARKER
from jobpulse.progress.record import ProgressUpdate, progress_body, progress_from_job
from jobpulse.progress.store import REDIS_ERRORS, UNREACHABLE
from jobpulse.retention import remove_files
from jobpulse.settings import Settings
from jobpulse.states import State

__all__ = ["cancel", "enqueue", "progress_of", "queue_job", "remove", "retry"]


async def progress_of(services: Services, job_id: str) -> dict[str, Any] | None:
    """The live progress body of a job, or None when Redis holds no record of it."""
    raw = await services.store.read(job_id)
    if raw is None:
        return None
    return progress_body(job_id, raw, int(time.time() * 1000), services.policy)


def enqueue(services: Services, kind: Kind, job_id: str) -> None:
    """Send the job's Celery message, by name, to its kind's queue; 503 if the broker cannot take it."""
    try:
        send_job(services.celery, kind.task, kind.queue, job_id, retries=1, interval=0.1)
    except Exception as exc:  # kombu raises its own and the transport's errors
        raise ServiceUnavailable(
            "The job queue is unreachable; try again shortly.", code="broker_unavailable"
        ) from exc


async def queue_job(services: Services, new: NewJob, kind: Kind) -> dict[str, Any]:
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


async def cancel(services: Services, job: Tracked, kind: Kind) -> dict[str, Any]:
    """Cancel ``job`` of ``kind`` (DB first, then Redis); the worker notices at its next progress report."""
    if State(job.state).terminal:
        raise Conflict(f"The job already ended ({job.state}).", code="already_terminal")
    try:
        raw = await services.store.read(job.id) or {}
    except ServiceUnavailable:
        raw = {}
    last = progress_body(job.id, raw, 0, services.policy) if raw else {}
    percent = last.get("percent")
    done = await run_in_threadpool(
        services.records(kind).finish, job.id, State.CANCELLED, owner=job.owner, percent=percent
    )
    if not done:
        raise Conflict("The job already ended.", code="already_terminal")
    details = raw.get(b"details")
    update = ProgressUpdate(
        State.CANCELLED,
        percent=percent,
        current=last.get("current"),
        total=last.get("total"),
        message="Cancelled by its owner",
        details=None if details is None else details.decode(),  # where it stopped, as the worker said
    )
    try:
        await services.store.write(job.id, update, owner=job.owner, kind=kind.name)
        body = await progress_of(services, job.id)
    except ServiceUnavailable:
        body = None  # the DB has it; the worker stops when it next finds it cancelled
    return body or progress_from_job(job.id, kind.name, update, services.policy)


async def remove(services: Services, record: Tracked, kind: Kind) -> None:
    """Delete ``record`` for good: its DB record (and a spreadsheet's rows), its files, its progress.

    A job still active is cancelled in the DB first. Its progress record is then replaced, in one
    transaction, by a marker that every read answers as UNKNOWN (it names no owner) and every worker
    write is refused by (it is CANCELLED): a worker still running stops at its next report and discards
    what it wrote meanwhile, instead of bringing the progress record back. The marker is kept for the
    terminal TTL, as long as the record it replaces would have lived. Redis unreachable: 503 before
    anything but that cancel is done.
    """
    records = services.records(kind)
    if not State(record.state).terminal:
        await run_in_threadpool(records.finish, record.id, State.CANCELLED, owner=record.owner)
    await _bury_progress(services, record.id)
    await run_in_threadpool(records.delete, record.id)  # the jobs table's delete takes the rows along
    await run_in_threadpool(remove_files, services.settings, record.id)


async def _bury_progress(services: Services, job_id: str) -> None:
    store = services.store
    try:  # one SET replaces the record (of either layout) whole
        await store.client.set(store.keys.progress(job_id), DELETED_MARKER, px=store.keys.terminal_ttl_ms)
    except REDIS_ERRORS as exc:
        raise ServiceUnavailable(UNREACHABLE) from exc


async def retry(services: Services, record: Tracked, kind: Kind) -> dict[str, Any]:
    """Queue a new job with a FAILED ``record``'s kind, owner, options and input (its record names the
    one it retries in ``retry_of``); the new job's PENDING progress body. 409 for any other state, or
    when the input is no longer kept."""
    if record.state != State.FAILED.value:
        raise Conflict(f"Only a FAILED job can be retried; this one is {record.state}.", code="not_failed")
    new_id = new_job_id()
    if isinstance(kind.input, Upload):
        await run_in_threadpool(_copy_input, services.settings, record.id, new_id)
    new = NewJob(
        id=new_id,
        kind=kind.name,
        owner=record.owner,
        options=record.options,
        input_filename=record.input_filename,
        input_size_bytes=record.input_size_bytes,
        input_content_type=record.input_content_type,
        input_data=record.input_data,
        retry_of=record.id,
    )
    try:
        return await queue_job(services, new, kind)
    except BaseException:  # nothing is left of a retry that could not be queued
        shutil.rmtree(services.settings.upload_dir / new_id, ignore_errors=True)
        raise


def _copy_input(settings: Settings, source_id: str, target_id: str) -> Path:
    """Give job ``target_id`` the uploaded input of ``source_id``: a hard link (no copy of a large
    upload; inputs are never changed in place), or a copy across file systems."""
    source = next(iter(sorted((settings.upload_dir / source_id).glob("input*"))), None)
    if source is None or not source.is_file():
        raise Conflict(
            "The input of this job is no longer kept, so it cannot be retried; please submit it again.",
            code="input_gone",
        )
    folder = settings.upload_dir / target_id
    folder.mkdir(mode=0o700)  # beside the source's folder: upload_dir exists
    target = folder / source.name
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return target
