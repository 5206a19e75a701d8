"""The reaper: no job stays RUNNING or PENDING forever, and Redis mirrors what the database decided.

Every ``jobpulse worker`` runs a :class:`Reaper` thread in its main process; a Redis lock
(``keys.reaper_lock``, ``SET NX PX``) lets one worker of many make each pass, once per
``reaper_interval_seconds``. A pass (:func:`reap_once`):

a. **Lost workers.** A RUNNING or PROCESSING job whose lease (``keys.lock``) is missing is remembered in
   ``keys.reaper_lost`` with the time it was first seen. Still lease-less ``job_lock_seconds`` later (a
   live worker renews every third of that, and takes its lease back after Redis restarted empty), its
   worker is gone: the job is re-queued while ``attempts < job_max_attempts``, else it ends FAILED.
   A re-queued job is not re-queued again while its message may still wait in the queue (until the
   visibility timeout) unless a worker started it meanwhile. PENDING and FALLBACK_TO_GPU jobs older than
   the visibility timeout are sent again too (once per visibility timeout): their message may be lost.
b. **Redis data loss.** ``keys.epoch`` is written once and never expires. When it is missing, Redis lost
   its data (or is new) and queued messages may be gone with it: every PENDING and FALLBACK_TO_GPU job is
   sent again. Duplicates are harmless: :func:`~jobpulse.worker.task.run_job` drops a message for a
   terminal job, one that finds another worker's lease retries later (and then finds the job ended), and
   the database's conditional updates let only one run record an end.
c. **Progress records.** Records of jobs active in the database have their TTL extended (a job queued
   longer than the progress TTL must not read UNKNOWN), and missing ones are recreated from the database.
   Jobs that ended in the database but whose record is not terminal (a Redis blip at the end, a worker
   that died between its two writes, data loss) get the database's terminal state written to Redis.

The runner also calls retention (:func:`jobpulse.retention.prune`) once per ``prune_interval_seconds``,
guarded by ``keys.prune_lock``.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import bootsteps

from jobpulse.broker import send_job
from jobpulse.db.models import Tracked
from jobpulse.db.repository import as_utc
from jobpulse.kinds import resolve
from jobpulse.progress import layout
from jobpulse.progress.lua import lua_source
from jobpulse.progress.record import ProgressUpdate
from jobpulse.retention import prune
from jobpulse.settings import Settings
from jobpulse.states import State
from jobpulse.worker.context import WorkerContext
from jobpulse.worker.recovery import GAVE_UP_REASON, end_failed, mirror_terminal
from jobpulse.worker.task import discard

__all__ = ["PassReport", "Reaper", "ReaperMemory", "ReaperStep", "reap_once"]

log = logging.getLogger(__name__)

_RUNNING = frozenset({State.RUNNING, State.PROCESSING})
_QUEUED = frozenset({State.PENDING, State.FALLBACK_TO_GPU})
_PAGE = 1000  # terminal records read per query
# Terminal records that ended this long before a pass are checked again by the next one: a commit lands
# after its finished_at, and workers' clocks differ.
_SWEEP_MARGIN = timedelta(minutes=5)


@dataclass
class ReaperMemory:
    """What one process's reaper remembers between passes."""

    swept_since: datetime | None = None  # terminal records that ended after this are checked next


@dataclass
class PassReport:
    """What a pass did, by job id (for logs and tests)."""

    epoch_lost: bool = False
    lease_less: list[str] = field(default_factory=list)  # first seen without a lease this pass
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    refreshed: int = 0  # progress records whose TTL was kept up
    recreated: list[str] = field(default_factory=list)
    mirrored: list[str] = field(default_factory=list)  # terminal states copied from the DB to Redis


def _requeue(app: Any, context: WorkerContext, record: Tracked) -> bool:
    """Send the messages that run ``record`` from its state: a handed-off job (FALLBACK_TO_GPU) gets what
    its kind's ``resume`` says (the OCR kind: the GPU queue, and the CPU after the wait); any other job
    its kind's task. False for a kind this worker does not know: nothing is sent."""
    name = context.kind_of(record).name
    kind = context.kinds.get(name)
    if kind is None:
        log.warning("job %s: its kind %r is not registered in this worker; not re-queued", record.id, name)
        return False
    if State(record.state) not in (State.PENDING, kind.running_state) and kind.resume is not None:
        for requeue in resolve(kind.resume)(context.settings):
            send_job(app, requeue.task, requeue.queue, record.id, requeue.countdown)
        return True
    send_job(app, kind.task, kind.queue, record.id)
    return True


def _discarder(app: Any, context: WorkerContext, record: Tracked) -> Any:
    """The kind's way to remove a job's partial output, if this worker runs the kind."""
    task = app.tasks.get(context.kind_of(record).task)
    handler = getattr(task, "jobpulse_handler", None)
    if handler is None or handler.discard is None:
        return None
    return lambda current: discard(context, handler, current)


def _lost_entry(raw: bytes | None) -> tuple[int, int | None, int]:
    """``first_seen_ms[:attempts:requeued_ms]`` -> (first seen, attempts when re-queued, when)."""
    if raw is None:
        return 0, None, 0
    parts = raw.decode().split(":")
    if len(parts) == 3:
        return int(parts[0]), int(parts[1]), int(parts[2])
    return int(parts[0]), None, 0


def _since_ms(record: Tracked) -> int:
    moment = as_utc(record.started_at or record.created_at)
    assert moment is not None
    return int(moment.timestamp() * 1000)


def _find_lost(
    context: WorkerContext,
    app: Any,
    active: Sequence[Tracked],
    now_ms: int,
    report: PassReport,
    sent: Collection[str] = (),
) -> None:
    """(a) Re-queue, or end FAILED at the attempts cap, running jobs whose worker is gone; and send again
    queued jobs older than the visibility timeout (their message was lost: an API that died before
    sending it, a retry that Redis refused), at most once per visibility timeout. ``sent``: jobs whose
    messages this pass sent already."""
    keys, client, settings = context.keys, context.redis, context.settings
    patience_ms = settings.visibility_timeout_seconds * 1000
    stale = {
        record.id: record
        for record in active
        if State(record.state) in _QUEUED and now_ms - _since_ms(record) >= patience_ms
    }
    running = [record for record in active if State(record.state) in _RUNNING]
    with client.pipeline(transaction=False) as pipe:
        for record in running:
            # A lease, or a retry marker: a job waiting for its retry after a Redis or database error.
            pipe.exists(keys.lock(record.id), keys.retry(record.id))
        leased = pipe.execute() if running else []
    lost: dict[bytes, bytes] = client.hgetall(keys.reaper_lost)  # type: ignore[assignment]
    lease_less = {record.id: record for record, has in zip(running, leased, strict=True) if not has}
    gone = [job_id for job_id in lost if job_id.decode() not in lease_less and job_id.decode() not in stale]
    if gone:
        client.hdel(keys.reaper_lost, *gone)
    for job_id, record in stale.items():
        raw = lost.get(job_id.encode())
        if raw is not None and now_ms - _lost_entry(raw)[2] < patience_ms:
            continue
        if job_id not in sent and _requeue(app, context, record):
            report.requeued.append(job_id)
            log.warning("job %s: %s for longer than the visibility timeout; sent again", job_id, record.state)
        client.hset(keys.reaper_lost, job_id, f"{now_ms}:-1:{now_ms}")
    for job_id, record in lease_less.items():
        raw = lost.get(job_id.encode())
        first_seen, requeued_attempts, requeued_ms = _lost_entry(raw)
        if raw is None or (requeued_attempts is not None and requeued_attempts != record.attempts):
            # New, or started again since it was re-queued and lost again: wait a lease's length.
            client.hset(keys.reaper_lost, job_id, str(now_ms))
            report.lease_less.append(job_id)
            log.warning("job %s is %s without a lease: its worker may be gone", job_id, record.state)
            continue
        if requeued_attempts is not None:
            if now_ms - requeued_ms < settings.visibility_timeout_seconds * 1000:
                continue  # its message may still wait in the queue
        elif now_ms - first_seen < keys.lock_ttl_ms:
            continue
        if record.attempts >= settings.job_max_attempts or not _requeue(app, context, record):
            log.warning("job %s: its worker died on each of %d attempts; FAILED", job_id, record.attempts)
            end_failed(context, record, GAVE_UP_REASON, _discarder(app, context, record))
            client.hdel(keys.reaper_lost, job_id)
            report.failed.append(job_id)
        else:
            client.hset(keys.reaper_lost, job_id, f"{first_seen}:{record.attempts}:{now_ms}")
            report.requeued.append(job_id)
            log.warning("job %s: its worker is gone; re-queued after attempt %d", job_id, record.attempts)


def _epoch_lost(context: WorkerContext, now_ms: int) -> bool:
    """(b) True when the epoch marker was missing (it is written now): Redis lost its data, or is new."""
    marker = f"{now_ms}:{secrets.token_hex(8)}"
    return bool(context.redis.set(context.keys.epoch, marker, nx=True))


def _keep_records(context: WorkerContext, active: Sequence[Tracked], report: PassReport) -> None:
    """(c) Extend the TTL of active jobs' progress records; recreate the missing ones from the DB."""
    if not active:
        return
    keys = context.keys
    touch = context.redis.register_script(lua_source("touch_progress.lua"))
    with context.redis.pipeline(transaction=False) as pipe:
        for record in active:
            touch(keys=[keys.progress(record.id)], args=[keys.active_ttl_ms], client=pipe)
        found = pipe.execute()
    for record, exists in zip(active, found, strict=True):
        if exists:
            report.refreshed += 1
            continue
        state = State(record.state)
        queued = state is State.PENDING
        update = ProgressUpdate(
            state,
            percent=0.0 if queued else record.percent,
            message="Waiting for a worker" if queued else None,
        )
        result = context.store.write(
            record.id, update, owner=record.owner, kind=context.kind_of(record).name, create=True
        )
        if result.accepted:
            report.recreated.append(record.id)
            log.info("job %s: progress record was missing; recreated as %s", record.id, state.value)


def _finished(context: WorkerContext, since: datetime) -> Iterator[Tracked]:
    """Terminal records of both tables that ended at or after ``since``, page by page."""
    for records in (context.jobs, context.videos):
        start = since
        while True:
            page: Sequence[Tracked] = records.finished_since(start, limit=_PAGE)
            yield from page
            last = page[-1].finished_at if page else None
            if len(page) < _PAGE or last is None or last <= start:
                break
            start = last


def _mirror_finished(context: WorkerContext, since: datetime, report: PassReport) -> None:
    """(c) Terminal database states that Redis does not show are written to Redis."""
    keys = context.keys
    ended = list(_finished(context, since))
    if not ended:
        return
    with context.redis.pipeline(transaction=False) as pipe:
        for record in ended:
            pipe.get(keys.progress(record.id))
        stored = pipe.execute(raise_on_error=False)  # a hash of jobpulse < 0.6 answers WRONGTYPE
    for record, value in zip(ended, stored, strict=True):
        state = layout.state_of(value) if isinstance(value, bytes) else None
        if state is not None and state.decode() == record.state:
            continue
        result = mirror_terminal(context, record)
        if result.accepted:
            report.mirrored.append(record.id)
            log.info("job %s: Redis showed %s; wrote the database's %s", record.id, state, record.state)


def reap_once(context: WorkerContext, app: Any, now: float, memory: ReaperMemory | None = None) -> PassReport:
    """One pass of the reaper at ``now`` (seconds since the epoch); ``app`` sends re-queued messages.

    ``memory`` carries what this process saw in its earlier passes; without it, every terminal record of
    the last terminal-progress TTL is checked.
    """
    memory = memory if memory is not None else ReaperMemory()
    report = PassReport()
    now_ms = int(now * 1000)
    moment = datetime.fromtimestamp(now, UTC)
    report.epoch_lost = _epoch_lost(context, now_ms)
    active: list[Tracked] = [*context.jobs.active(), *context.videos.active()]
    if report.epoch_lost:
        memory.swept_since = None
        queued = [record for record in active if State(record.state) in _QUEUED]
        level = logging.WARNING if queued else logging.INFO
        log.log(
            level, "Redis has no epoch marker (it lost its data, or is new): re-queuing %d jobs", len(queued)
        )
        for record in queued:
            if _requeue(app, context, record):
                report.requeued.append(record.id)
    _find_lost(context, app, active, now_ms, report, sent=set(report.requeued))
    _keep_records(context, active, report)
    window = timedelta(seconds=context.settings.terminal_progress_ttl_seconds)
    since = memory.swept_since or moment - window
    _mirror_finished(context, max(since, moment - window), report)
    memory.swept_since = (
        moment - _SWEEP_MARGIN - timedelta(seconds=2 * context.settings.reaper_interval_seconds)
    )
    return report


def _retention(context: WorkerContext, now: float) -> None:
    """Remove terminal jobs past ``retention_days`` (:func:`jobpulse.retention.prune`)."""
    moment = datetime.fromtimestamp(now, UTC)
    prune(context.settings, context.jobs, context.videos, context.redis, now=moment)  # it logs what it did


class Reaper:
    """Runs :func:`reap_once` every ``reaper_interval_seconds`` from a daemon thread of the worker's main
    process, when this worker wins the pass's lock; and retention every ``prune_interval_seconds``."""

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.memory = ReaperMemory()
        self._token = secrets.token_hex(8)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._context: WorkerContext | None = None

    def start(self) -> None:
        """Start the thread; the first pass is tried at once."""
        self._thread = threading.Thread(target=self._loop, name="jobpulse-reaper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (after a pass in progress ends, waiting at most ``timeout`` seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._context is not None:
            self._context.close()
            self._context = None

    def _loop(self) -> None:
        interval = self.settings.reaper_interval_seconds
        while not self._stop.is_set():
            self.tick(time.time())
            self._stop.wait(interval)

    def tick(self, now: float) -> PassReport | None:
        """Try this interval's pass (and retention when due); the report if this worker made the pass."""
        settings = self.settings
        try:
            if self._context is None:
                self._context = WorkerContext.create(settings, self.app.conf.jobpulse_kinds)
            context = self._context
            report = None
            interval_ms = max(1, int(settings.reaper_interval_seconds * 1000))
            if context.redis.set(context.keys.reaper_lock, self._token, nx=True, px=interval_ms):
                report = reap_once(context, self.app, now, self.memory)
            prune_ms = max(1, int(settings.prune_interval_seconds * 1000))
            if context.redis.set(context.keys.prune_lock, self._token, nx=True, px=prune_ms):
                _retention(context, now)
        except Exception as exc:  # Redis or the database away: try again next interval
            log.warning("reaper pass failed: %r", exc)
            return None
        return report


class ReaperStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """A worker bootstep: the :class:`Reaper` runs in the worker's main process from after the pool
    started until the worker stops (its ``start``, ``stop`` and ``terminate`` are the reaper's)."""

    requires = ("celery.worker.components:Pool",)

    def include_if(self, worker: Any) -> bool:
        """A worker with ``reaper_interval_seconds`` 0 runs no reaper (and so no retention)."""
        settings: Settings = worker.app.conf.jobpulse_settings
        return settings.reaper_interval_seconds > 0

    def create(self, worker: Any) -> Reaper:
        return Reaper(worker.app, worker.app.conf.jobpulse_settings)
