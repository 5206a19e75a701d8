"""The lifecycle every job shares: claim, run, record the end in the DB and then in Redis.

A job kind (:mod:`jobpulse.kinds`) names a handler (:mod:`jobpulse.handler`); :func:`run_job` does the
rest, for jobpulse's own kinds, plugins' kinds and the host application's tracked tasks
(:mod:`jobpulse.tracker`) alike. The database decides the end:
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from jobpulse.broker import send_job
from jobpulse.db.engine import DATABASE_ERRORS
from jobpulse.db.models import Tracked
from jobpulse.db.repository import RecordRepository
from jobpulse.errors import BadInput, JobCancelled, JobFailed, ServiceUnavailable
from jobpulse.handler import HandOff, JobRun, Outcome, Requeue
from jobpulse.kinds import JsonInput, Kind, resolve
from jobpulse.progress.lease import Lease
from jobpulse.progress.reporter import Reporter
from jobpulse.progress.store import REDIS_ERRORS
from jobpulse.states import RESULT_STATES, State
from jobpulse.worker.context import WorkerContext, worker_context
from jobpulse.worker.recovery import GAVE_UP_REASON, end_failed, mirror_terminal

__all__ = [
    "BoundHandler",
    "JobTask",
    "LeaseTaken",
    "bind_handler",
    "register_kind",
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


@dataclass(frozen=True)
class BoundHandler:
    """A kind's handler, resolved: ``run`` and ``discard`` take a :class:`~jobpulse.handler.JobRun`."""

    kind: Kind
    run: Callable[[JobRun], Any]
    discard: Callable[[JobRun], None] | None = None


def bind_handler(kind: Kind, target: Any) -> BoundHandler:
    """``target`` as a handler of ``kind``: a class (instantiated), an object with ``run`` (and maybe
    ``discard``), or a function; a dotted name is imported first."""
    if isinstance(target, str):
        target = resolve(target)
    if isinstance(target, type):
        target = target()
    run = getattr(target, "run", None)
    if callable(run):
        return BoundHandler(kind, run, getattr(target, "discard", None))
    if callable(target):
        return BoundHandler(kind, target)
    raise TypeError(f"The handler of kind {kind.name!r} is neither callable nor has a run method")


# Redis or the database failing under a job: the job is retried later rather than failed.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    ServiceUnavailable,
    *REDIS_ERRORS,
    *DATABASE_ERRORS,
)
_MAX_RETRY_DELAY = 300


class LeaseTaken(Exception):
    """Another worker holds the job (a duplicate delivery while the first still runs)."""


def run_job(context: WorkerContext, job_id: str, handler: BoundHandler) -> State | None:
    """Run job ``job_id`` to its end with ``handler``; returns the terminal state this run recorded, if
    any.

    Raises :class:`LeaseTaken` when another worker runs the job right now (the task retries later), and
    re-raises a handler's :class:`~jobpulse.handler.HandOff` once its state is recorded and the lease
    released: the caller sends its messages (:func:`register_kind` does).
    """
    records = context.records(handler.kind)
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
    context: WorkerContext, records: RecordRepository[Any], job: Tracked, handler: BoundHandler
) -> State | None:
    """Start the job and run it. A start that meets a Redis or database error leaves a marker
    (``keys.retry``): the reaper does not take the lease-less job for a lost one while its retry waits,
    and the retry's start is not counted as another attempt (the attempts cap is for dying workers)."""
    marker = context.keys.retry(job.id)
    retried = bool(context.redis.exists(marker))
    attempt = records.start(job.id, handler.kind.running_state, count=not retried)
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


def job_run(context: WorkerContext, kind: Kind, job: Tracked, reporter: Reporter) -> JobRun:
    """What a handler of ``kind`` gets for ``job``: its input and options parsed by the kind's models
    (a stored document the model now refuses is the input's fault: REJECTED_BAD_INPUT)."""
    document = job.input_data
    parsed_input: Any = None
    options: Any = job.options or {}
    try:
        if isinstance(kind.input, JsonInput):
            parsed_input = kind.input.model.model_validate(document or {})
        if kind.options is not None:
            options = kind.options.model_validate(options)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise BadInput(f"The job's input or options are no longer valid: {_first_error(exc)}") from None
    return JobRun(
        id=job.id,
        kind=kind,
        owner=job.owner,
        input=parsed_input,
        options=options,
        settings=context.settings,
        reporter=reporter,
        record=job,
        repository=context.records(kind),
    )


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
    return str(exc)


def new_reporter(context: WorkerContext, kind: Kind, job: Tracked) -> Reporter:
    """The reporter of one run of ``job``."""
    settings = context.settings
    return Reporter(
        context.store,
        job.id,
        owner=job.owner,
        kind=kind.name,
        state=kind.running_state,
        min_interval=settings.reporter_min_interval_seconds,
        finish_retry_seconds=settings.finish_retry_seconds,
        details_max_bytes=settings.progress_details_max_bytes,
    )


def _outcome(returned: Any) -> Outcome:
    """What a handler returned, as an outcome: an Outcome, a result mapping (SUCCESS), or None."""
    if isinstance(returned, Outcome):
        return returned
    if returned is None:
        return Outcome(State.SUCCESS)
    if isinstance(returned, Mapping):
        return Outcome(State.SUCCESS, result=dict(returned))
    raise TypeError(f"A handler returns an Outcome, a mapping or None, not {type(returned).__name__}")


def _run_started(
    context: WorkerContext,
    records: RecordRepository[Any],
    job: Tracked,
    handler: BoundHandler,
    attempt: int,
) -> State | None:
    settings = context.settings
    kind = handler.kind
    reporter = new_reporter(context, kind, job)
    run: JobRun | None = None
    if attempt > settings.job_max_attempts:
        # Each earlier start ended with its worker dying (the message was redelivered): a poison input.
        log.warning(
            "job %s: start %d is over the limit of %d; FAILED", job.id, attempt, settings.job_max_attempts
        )
        outcome = Outcome(State.FAILED, error_reason=GAVE_UP_REASON)
        return _finish(context, records, job, handler, reporter, outcome)
    time_limit = Outcome(State.FAILED, error_reason=time_limit_reason(settings.job_time_limit_seconds))
    try:
        reporter.transition(kind.running_state, stage="starting")
        run = job_run(context, kind, job, reporter)
        outcome = _outcome(handler.run(run))
    except HandOff as handoff:
        if _record_hand_off(records, job, reporter, handoff):
            raise
        return None
    except SoftTimeLimitExceeded:
        outcome = time_limit
    except INFRASTRUCTURE_ERRORS as exc:
        if not _timed_out(exc):
            raise  # not the job's fault: the task retries it later (register_kind)
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
    return _finish(context, records, job, handler, reporter, outcome, run)


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


def discard(context: WorkerContext, handler: BoundHandler, job: Tracked, run: JobRun | None = None) -> None:
    """Let the handler remove what a job that did not succeed left (files, rows)."""
    if handler.discard is None:
        return
    if run is None:
        reporter = new_reporter(context, handler.kind, job)
        run = JobRun(
            id=job.id,
            kind=handler.kind,
            owner=job.owner,
            input=None,
            options=job.options or {},
            settings=context.settings,
            reporter=reporter,
            record=job,
            repository=context.records(handler.kind),
        )
    handler.discard(run)


def _finish(
    context: WorkerContext,
    records: RecordRepository[Any],
    job: Tracked,
    handler: BoundHandler,
    reporter: Reporter,
    outcome: Outcome,
    run: JobRun | None = None,
) -> State | None:
    if outcome.state not in RESULT_STATES:
        discard(context, handler, job, run)
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
            discard(context, handler, job, run)
        if current is not None and State(current.state).terminal:
            reporter.finish(State(current.state), error_reason=current.error_reason)
        return None
    reporter.finish(outcome.state, error_reason=outcome.error_reason, message=outcome.message)
    return outcome.state


def _send(app: Any, job_id: str, messages: Sequence[Requeue]) -> None:
    """Send a hand-off's messages, each with a short publish retry (the caller retries the delivery if
    the broker still refuses)."""
    for requeue in messages:
        send_job(app, requeue.task, requeue.queue, job_id, requeue.countdown)


class JobTask(Task):  # type: ignore[misc]
    """The base of jobpulse's job tasks: knows its handler, and ends a job killed at the hard time limit
    FAILED.

    Celery SIGKILLs the pool child at the hard limit (the soft limit's exception was not honoured in
    time), then, in the worker's main process, acknowledges the message (``acks_on_failure_or_timeout``)
    and calls :meth:`on_failure` with ``TimeLimitExceeded``: without this the job would stay RUNNING.
    """

    jobpulse_handler: BoundHandler

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        if not isinstance(exc, TimeLimitExceeded) or not args:
            return
        job_id = str(args[0])
        context = worker_context(self.app)
        job = context.records(self.jobpulse_handler.kind).get(job_id)
        if job is None or State(job.state).terminal:
            return
        reason = time_limit_reason(context.settings.job_time_limit_seconds)
        log.warning("job %s: killed at the hard time limit; FAILED", job_id)
        try:
            handler = self.jobpulse_handler
            end_failed(context, job, reason, lambda record: discard(context, handler, record))
        except Exception:  # the reaper ends it later
            log.exception("job %s: could not record the time limit", job_id)


def _register(app: Any, name: str, handler: BoundHandler) -> None:
    """Register the Celery task ``name`` that runs jobs with ``handler``."""

    @app.task(  # type: ignore[untyped-decorator]
        name=name,
        bind=True,
        max_retries=None,
        shared=False,  # this app's task only: not added to every app made later in the process
        base=JobTask,
        jobpulse_handler=handler,
    )
    def job_task(task: Any, job_id: str) -> str | None:
        context = worker_context(task.app)
        try:
            state = run_job(context, job_id, handler)
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
        job = context.records(handler.kind).get(job_id)
        # A FAILED job's upload is kept for POST .../retry/ until the job is deleted or pruned.
        if job is None or (State(job.state).terminal and job.state != State.FAILED.value):
            shutil.rmtree(context.settings.upload_dir / job_id, ignore_errors=True)
        return None if state is None else state.value


def register_kind(app: Any, kind: Kind) -> None:
    """Register the tasks that run jobs of ``kind`` (its own, and its other ways of running); the
    handlers are imported here, in the worker, and never by the API."""
    if kind.handler is None:
        return  # the host application runs this kind's jobs in its own tasks (jobpulse.tracker)
    _register(app, kind.task, bind_handler(kind, kind.handler))
    for task in kind.tasks:
        _register(app, task.name, bind_handler(kind, task.handler))
