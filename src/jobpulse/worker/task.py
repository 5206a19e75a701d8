"""The lifecycle every job shares: claim, run, record the end in the DB and then in Redis.

A job kind supplies a :class:`JobHandler`; :func:`run_job` does the rest. The database decides the end:
terminal updates are conditional, so a job cancelled while it ran, or delivered twice, ends once.

A job is started at most ``job_max_attempts`` times: a worker that dies under it (an input that crashes
the process) has its message redelivered, and the start past the limit ends the job FAILED, so a poison
input never loops. A job killed at Celery's hard time limit is ended FAILED by the worker's main process
(:meth:`JobTask.on_failure`); the reaper (:mod:`jobpulse.worker.reaper`) is the backstop for both.

A handler may also give a job up to other workers by raising :class:`HandOff` (an OCR job the CPU gives
to the GPU queue): the job moves to the hand-off's active state in the DB and then in Redis, the lease is
released, and then the hand-off's messages are sent. Whatever runs the job next goes through
:func:`run_job` again, whose terminal check and lease make duplicate or late messages harmless.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from jobpulse.db.engine import DATABASE_ERRORS
from jobpulse.db.models import Tracked
from jobpulse.db.repository import RecordRepository
from jobpulse.errors import BadInput, JobCancelled, JobFailed, ServiceUnavailable
from jobpulse.progress.lease import Lease
from jobpulse.progress.reporter import Reporter
from jobpulse.progress.store import REDIS_ERRORS
from jobpulse.settings import Settings
from jobpulse.states import RESULT_STATES, JobKind, State
from jobpulse.worker.app import TASKS
from jobpulse.worker.context import WorkerContext, worker_context
from jobpulse.worker.recovery import GAVE_UP_REASON, end_failed, mirror_terminal, send_job

__all__ = [
    "HandOff",
    "JobHandler",
    "JobTask",
    "Outcome",
    "Requeue",
    "input_path",
    "register_task",
    "run_job",
    "time_limit_reason",
]

log = logging.getLogger(__name__)

FAILED_REASON = (
    "An internal error stopped the job. Please try again later; if it keeps failing, contact support."
)


def time_limit_reason(seconds: int) -> str:
    """The user-safe reason of a job stopped at its time limit."""
    if seconds < 60:
        return f"The job took longer than its {seconds}-second limit."
    return f"The job took longer than its {seconds // 60}-minute limit."


def _timed_out(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was raised while handling, the soft time limit (a reader that turns any
    error in a file into "unreadable file" must not turn the clock into the user's fault)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, SoftTimeLimitExceeded):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


@dataclass
class Outcome:
    """How a job ended when it did not raise."""

    state: State = State.SUCCESS
    result: dict[str, Any] = field(default_factory=dict)  # the jobs table's ``result``
    message: str | None = None
    error_reason: str | None = None
    columns: dict[str, Any] = field(default_factory=dict)  # other columns of the kind's own table


@dataclass(frozen=True)
class Requeue:
    """A message a hand-off sends: run task ``task`` for the job on ``queue``, ``countdown`` seconds on."""

    task: str
    queue: str
    countdown: float = 0.0


class HandOff(Exception):
    """Raised by a handler to give the job up to other workers: the job moves to ``state`` (an active
    state, e.g. FALLBACK_TO_GPU) with ``message`` shown in its progress, then ``messages`` are sent."""

    def __init__(
        self, state: State, messages: Sequence[Requeue], *, message: str, stage: str | None = None
    ) -> None:
        assert not state.terminal
        super().__init__(message)
        self.state = state
        self.messages = tuple(messages)
        self.message = message
        self.stage = stage


R_contra = TypeVar("R_contra", bound=Tracked, contravariant=True)


class JobHandler(Protocol[R_contra]):
    """One job kind's work."""

    running_state: State

    def run(self, job: R_contra, reporter: Reporter, context: WorkerContext) -> Outcome:
        """Do the work, reporting progress; raise BadInput for unacceptable input."""

    def discard(self, job: R_contra, context: WorkerContext) -> None:
        """Remove partial output of a job that did not succeed."""


# Redis or the database failing under a job: the job is retried later rather than failed.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    ServiceUnavailable,
    *REDIS_ERRORS,
    *DATABASE_ERRORS,
)
_MAX_RETRY_DELAY = 300


class LeaseTaken(Exception):
    """Another worker holds the job (a duplicate delivery while the first still runs)."""


def run_job(
    context: WorkerContext, records: RecordRepository[Any], job_id: str, handler: JobHandler[Any]
) -> State | None:
    """Run job ``job_id`` (a row of ``records``) to its end; returns the terminal state this run
    recorded, if any.

    Raises :class:`LeaseTaken` when another worker runs the job right now (the task retries later), and
    re-raises a handler's :class:`HandOff` once its state is recorded and the lease released: the caller
    sends its messages (:func:`register_task` does).
    """
    job = records.get(job_id)
    if job is None:
        log.warning("job %s: no such job, message dropped", job_id)
        return None
    if State(job.state).terminal:
        # A worker may have died between its DB write and its Redis write: copy the end to Redis (the
        # Lua script drops it if Redis has it already).
        log.info("job %s: already %s, nothing to do but copy that to its progress record", job_id, job.state)
        try:
            mirror_terminal(context, job)
        except ServiceUnavailable as exc:
            log.warning("job %s: progress record not updated (%r); the reaper will", job_id, exc)
        return None
    lease = Lease(context.redis, context.keys, job_id)
    if not lease.acquire():
        raise LeaseTaken(job_id)
    with lease.kept_alive():
        return _run_leased(context, records, job, handler)


def _run_leased(
    context: WorkerContext, records: RecordRepository[Any], job: Tracked, handler: JobHandler[Any]
) -> State | None:
    """Start the job and run it. A start that meets a Redis or database error leaves a marker
    (``keys.retry``): the reaper does not take the lease-less job for a lost one while its retry waits,
    and the retry's start is not counted as another attempt (the attempts cap is for dying workers)."""
    marker = context.keys.retry(job.id)
    retried = bool(context.redis.exists(marker))
    attempt = records.start(job.id, handler.running_state, count=not retried)
    if attempt is None:
        return None
    if retried:
        context.redis.delete(marker)
    try:
        return _run_started(context, records, job, handler, attempt)
    except INFRASTRUCTURE_ERRORS:
        wait_ms = (_MAX_RETRY_DELAY + context.settings.job_lock_seconds) * 1000
        # If Redis is what failed, there is no marker: the reaper finds the job lease-less and re-queues it.
        with contextlib.suppress(*REDIS_ERRORS):
            context.redis.set(marker, attempt, px=wait_ms)
        raise


def _run_started(
    context: WorkerContext,
    records: RecordRepository[Any],
    job: Tracked,
    handler: JobHandler[Any],
    attempt: int,
) -> State | None:
    settings = context.settings
    reporter = Reporter(
        context.store,
        job.id,
        owner=job.owner,
        kind=job.kind,  # type: ignore[attr-defined]
        state=handler.running_state,
        min_interval=settings.reporter_min_interval_seconds,
        finish_retry_seconds=settings.finish_retry_seconds,
    )
    if attempt > settings.job_max_attempts:
        # Each earlier start ended with its worker dying (the message was redelivered): a poison input.
        log.warning(
            "job %s: start %d is over the limit of %d; FAILED", job.id, attempt, settings.job_max_attempts
        )
        outcome = Outcome(State.FAILED, error_reason=GAVE_UP_REASON)
        return _finish(context, records, job, handler, reporter, outcome)
    time_limit = Outcome(State.FAILED, error_reason=time_limit_reason(settings.job_time_limit_seconds))
    try:
        reporter.transition(handler.running_state, stage="starting")
        outcome = handler.run(job, reporter, context)
    except HandOff as handoff:
        if _record_hand_off(records, job, reporter, handoff):
            raise
        return None
    except SoftTimeLimitExceeded:
        outcome = time_limit
    except INFRASTRUCTURE_ERRORS as exc:
        if not _timed_out(exc):
            raise  # not the job's fault: the task retries it later (register_task)
        outcome = time_limit
    except BadInput as exc:
        timed_out = _timed_out(exc)
        outcome = time_limit if timed_out else Outcome(State.REJECTED_BAD_INPUT, error_reason=exc.message)
    except JobFailed as exc:
        outcome = time_limit if _timed_out(exc) else Outcome(State.FAILED, error_reason=exc.message)
    except JobCancelled:
        outcome = Outcome(State.CANCELLED)
    except Exception as exc:
        if _timed_out(exc):
            outcome = time_limit
        else:
            log.exception("job %s failed", job.id)
            outcome = Outcome(State.FAILED, error_reason=FAILED_REASON)
    return _finish(context, records, job, handler, reporter, outcome)


def _record_hand_off(
    records: RecordRepository[Any], job: Tracked, reporter: Reporter, handoff: HandOff
) -> bool:
    """Move the job to the hand-off's state, DB first; False when it ended meanwhile (its owner
    cancelled it): then nothing is to be sent, and Redis mirrors the DB."""
    if records.set_state(job.id, handoff.state):
        try:
            reporter.transition(handoff.state, stage=handoff.stage, message=handoff.message)
        except JobCancelled:
            return False
        return True
    current = records.get(job.id)
    if current is not None and State(current.state).terminal:
        reporter.finish(State(current.state), error_reason=current.error_reason)
    return False


def _finish(
    context: WorkerContext,
    records: RecordRepository[Any],
    job: Tracked,
    handler: JobHandler[Any],
    reporter: Reporter,
    outcome: Outcome,
) -> State | None:
    if outcome.state not in RESULT_STATES:
        handler.discard(job, context)
    percent = 100.0 if outcome.state in RESULT_STATES else reporter.percent
    # The DB first: a client that sees a terminal progress record finds the same state in the DB.
    columns = {"result": outcome.result} if outcome.result else {}
    recorded = records.finish(
        job.id,
        outcome.state,
        percent=percent,
        error_reason=outcome.error_reason,
        columns=columns | outcome.columns,
    )
    if not recorded:
        # Someone ended it first (the owner cancelled): mirror the DB's state, drop our output.
        current = records.get(job.id)
        if outcome.state in RESULT_STATES:
            handler.discard(job, context)
        if current is not None and State(current.state).terminal:
            reporter.finish(State(current.state), error_reason=current.error_reason)
        return None
    reporter.finish(outcome.state, error_reason=outcome.error_reason, message=outcome.message)
    return outcome.state


def input_path(settings: Settings, job_id: str) -> Path:
    """The uploaded file of a job (``uploads/{id}/input<.ext>``)."""
    for path in sorted((settings.upload_dir / job_id).glob("input*")):
        return path
    raise BadInput("The uploaded file is no longer available; please upload it again.")


def _send(app: Any, job_id: str, messages: Sequence[Requeue]) -> None:
    """Send a hand-off's messages, each with a short publish retry (the caller retries the delivery if
    the broker still refuses)."""
    for requeue in messages:
        send_job(app, requeue.task, requeue.queue, job_id, requeue.countdown)


class JobTask(Task):  # type: ignore[misc]
    """The base of jobpulse's job tasks: knows its kind and handler, and ends a job killed at the hard
    time limit FAILED.

    Celery SIGKILLs the pool child at the hard limit (the soft limit's exception was not honoured in
    time), then, in the worker's main process, acknowledges the message (``acks_on_failure_or_timeout``)
    and calls :meth:`on_failure` with ``TimeLimitExceeded``: without this the job would stay RUNNING.
    """

    jobpulse_kind: JobKind
    jobpulse_handler: JobHandler[Any]

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        if not isinstance(exc, TimeLimitExceeded) or not args:
            return
        job_id = str(args[0])
        context = worker_context(self.app)
        job = context.records(self.jobpulse_kind).get(job_id)
        if job is None or State(job.state).terminal:
            return
        reason = time_limit_reason(context.settings.job_time_limit_seconds)
        log.warning("job %s: killed at the hard time limit; FAILED", job_id)
        try:
            end_failed(context, self.app, job, reason)
        except Exception:  # the reaper ends it later
            log.exception("job %s: could not record the time limit", job_id)


def register_task(app: Any, kind: JobKind, handler: JobHandler[Any], *, name: str | None = None) -> None:
    """Register the Celery task that runs ``handler`` for jobs of ``kind``: under the kind's task name
    (``TASKS``), or under ``name`` for another way of running the same kind (the OCR job's GPU attempt)."""
    name = name or TASKS[kind][0]

    @app.task(  # type: ignore[untyped-decorator]
        name=name,
        bind=True,
        max_retries=None,
        shared=False,  # this app's task only: not added to every app made later in the process
        base=JobTask,
        jobpulse_kind=kind,
        jobpulse_handler=handler,
    )
    def job_task(task: Any, job_id: str) -> str | None:
        context = worker_context(task.app)
        records = context.records(kind)
        try:
            state = run_job(context, records, job_id, handler)
        except LeaseTaken:
            raise task.retry(countdown=context.settings.job_lock_seconds) from None
        except INFRASTRUCTURE_ERRORS as exc:
            delay = min(_MAX_RETRY_DELAY, 2 ** (task.request.retries + 1))
            log.warning("job %s: %r; retrying in %d s", job_id, exc, delay)
            raise task.retry(countdown=delay) from exc
        except HandOff as handoff:
            # Sent after the lease is released, so the next worker can take the job at once. If the
            # broker refuses, this delivery is retried: the job is handed off again and re-sent.
            try:
                _send(task.app, job_id, handoff.messages)
            except Exception as exc:  # kombu raises its own and the transport's errors
                delay = min(_MAX_RETRY_DELAY, 2 ** (task.request.retries + 1))
                log.warning("job %s: hand-off not sent (%r); retrying in %d s", job_id, exc, delay)
                raise task.retry(countdown=delay) from exc
            return handoff.state.value
        job = records.get(job_id)
        # A FAILED job's upload is kept for POST .../retry/ until the job is deleted or pruned.
        if job is None or (State(job.state).terminal and job.state != State.FAILED.value):
            shutil.rmtree(context.settings.upload_dir / job_id, ignore_errors=True)
        return None if state is None else state.value
