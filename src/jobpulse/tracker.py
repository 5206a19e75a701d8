"""jobpulse as a library in the host application's processes: jobs that its own Celery tasks run.

A web backend declares a kind whose ``handler`` is None (its jobs are run by the backend's task, not by
jobpulse's worker), creates a job for one of its users, hands the id to its front end, and sends its
own task; the task's body runs under the same lifecycle as jobpulse's own jobs (lease, DB start and
end, forward-only progress, the terminal state in the database before Redis, cancellation seen at the
next update, a user-safe reason on failure)::

    tracker = Tracker()  # settings from the environment (REDIS_URL, DATABASE_URL), read at first use
    app = Celery("hostapp")
    app.add_defaults(tracker.celery_config)  # jobpulse's broker and this app's kinds' queues

    @app.task(name="hostapp.build_report", autoretry_for=(ServiceUnavailable,), retry_backoff=True,
              max_retries=None)
    @tracker.tracked
    def build_report(job: JobRun) -> dict[str, Any]:
        for done, row in enumerate(rows, 1):
            job.update(current=done, total=len(rows), details={"rows_done": done})
        return {"rows": len(rows)}

    job_id = tracker.create("report_build", owner=user_id, input={"rows": 500})  # in a web view
    build_report.delay(job_id)

Connections are made on first use in each process (Celery's prefork pool forks after import).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from pydantic import BaseModel

from jobpulse.auth import mint_token
from jobpulse.broker import create_celery
from jobpulse.db.engine import DATABASE_ERRORS
from jobpulse.db.repository import NewJob
from jobpulse.errors import ConfigurationError, InvalidOptions, PayloadTooLarge, ServiceUnavailable
from jobpulse.handler import HandOff, JobRun
from jobpulse.ids import is_job_id, new_job_id
from jobpulse.kinds import JsonInput, Kind, KindRegistry, Upload
from jobpulse.progress.record import ProgressUpdate
from jobpulse.progress.store import REDIS_ERRORS
from jobpulse.settings import Settings
from jobpulse.states import State
from jobpulse.worker.context import WorkerContext
from jobpulse.worker.task import BoundHandler, LeaseTaken, bind_handler, run_job

__all__ = ["Tracker"]

log = logging.getLogger(__name__)

_UNREACHABLE = "The job store (Redis or the database) is unreachable; try again shortly."
_OWNER_MAX_CHARS = 255  # the owner column

# What the host's Celery app takes from jobpulse's broker app (jobpulse.broker.create_celery): the same
# broker, its kinds' queues, late acks, and the time limits a job's FAILED reason names.
_SHARED_CELERY_SETTINGS = (
    "broker_url",
    "broker_use_ssl",
    "broker_connection_timeout",
    "broker_connection_retry_on_startup",
    "broker_transport_options",
    "task_routes",
    "task_acks_late",
    "task_reject_on_worker_lost",
    "task_soft_time_limit",
    "task_time_limit",
    "worker_prefetch_multiplier",
)


class Tracker:
    """jobpulse as a library in the host application's processes (its web views and its Celery
    workers), on the same Redis and database as jobpulse's API.

    ``settings`` default to the environment's and ``kinds`` to the installed kinds and those of
    ``settings.kind_modules``; both are read, and connections opened, at first use in each process.
    """

    def __init__(self, settings: Settings | None = None, kinds: KindRegistry | None = None) -> None:
        self._settings = settings
        self._kinds = kinds
        self._lock = threading.Lock()
        self._context: WorkerContext | None = None
        self._pid = 0

    @property
    def settings(self) -> Settings:
        """The settings in use (from the environment unless given)."""
        with self._lock:
            if self._settings is None:
                self._settings = Settings()
            return self._settings

    @property
    def kinds(self) -> KindRegistry:
        """The kinds this process knows."""
        settings = self.settings
        with self._lock:
            if self._kinds is None:
                self._kinds = KindRegistry.load(settings.kind_modules)
            return self._kinds

    def _connections(self) -> WorkerContext:
        """This process's connections (a forked child makes its own, leaving its parent's alone)."""
        settings, kinds = self.settings, self.kinds
        with self._lock:
            if self._context is None or self._pid != os.getpid():
                self._context = WorkerContext.create(settings, kinds)
                self._pid = os.getpid()
            return self._context

    def create(
        self,
        kind: str,
        *,
        owner: str,
        input: Mapping[str, Any] | BaseModel | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> str:
        """Register a PENDING job of ``kind`` (one whose ``handler`` is None) for ``owner``; returns its
        id, for the front end and for the host's task. Sends no message: the host sends its own task.

        Raises :class:`~jobpulse.errors.InvalidOptions` (HTTP 422's error) for a kind this process does
        not know, one jobpulse's workers run, an upload kind, and input or options the kind's models
        refuse (naming each bad field); :class:`~jobpulse.errors.ServiceUnavailable` when Redis or the
        database cannot be reached. Nothing is left of a job that could not be created.
        """
        if not owner or len(owner) > _OWNER_MAX_CHARS:
            raise ValueError(f"A job's owner is 1 to {_OWNER_MAX_CHARS} characters, not {len(owner)}")
        found = self._host_kind(kind)
        settings = self.settings
        data = _input_document(found, input, settings.max_json_body_bytes)
        raw_options = None if options is None else orjson.dumps(dict(options)).decode()
        new = NewJob(
            id=new_job_id(),
            kind=found.name,
            owner=owner,
            options=found.parse_options(raw_options, settings),
            input_filename="",
            input_size_bytes=0 if data is None else len(orjson.dumps(data)),
            input_content_type=None if data is None else "application/json",
            input_data=data,
        )
        try:
            self._queue(found, new)
        except DATABASE_ERRORS as exc:
            raise ServiceUnavailable(_UNREACHABLE, code="database_unavailable") from exc
        return new.id

    def _host_kind(self, name: str) -> Kind:
        kind = self.kinds.get(name)
        hosted = ", ".join(sorted(k.name for k in self.kinds if k.handler is None)) or "none"
        if kind is None:
            raise InvalidOptions(
                f"Unknown job kind {name!r}; this process knows these kinds of its own: {hosted} "
                "(add the module that declares it to JOBPULSE_KIND_MODULES).",
                code="invalid_kind",
            )
        if isinstance(kind.input, Upload):
            raise InvalidOptions(
                f"Jobs of kind {name!r} take a file: submit uploads over HTTP (POST {kind.prefix}/).",
                code="invalid_kind",
            )
        if kind.handler is not None:
            raise InvalidOptions(
                f"Jobs of kind {name!r} are run by jobpulse's workers: submit them over HTTP "
                f"(POST {kind.prefix}/). Kinds that tasks of your own run: {hosted}.",
                code="invalid_kind",
            )
        return kind

    def _queue(self, kind: Kind, new: NewJob) -> None:
        """The DB row, then the PENDING progress record; the row is removed if Redis refuses."""
        context = self._connections()
        records = context.records(kind)
        records.create(new)
        try:
            context.store.write(
                new.id,
                ProgressUpdate(State.PENDING, percent=0.0, message="Waiting for a worker"),
                owner=new.owner,
                kind=new.kind,
                create=True,
            )
        except ServiceUnavailable:
            records.delete(new.id)
            raise

    def run(self, job_id: str, body: Callable[[JobRun], Any]) -> State | None:
        """Run job ``job_id`` with ``body`` (a handler: a function of a :class:`~jobpulse.handler.JobRun`,
        or an object with ``run`` and optionally ``discard``) under jobpulse's lifecycle; returns the
        terminal state this run recorded, or None (no such job, already ended, cancelled while it ran,
        or running in another worker right now: a duplicate delivery is dropped).

        ``body`` ends the job as a jobpulse handler does: a returned mapping is the SUCCESS result,
        :class:`~jobpulse.errors.BadInput` ends it REJECTED_BAD_INPUT, :class:`~jobpulse.errors.JobFailed`
        FAILED with its message, any other exception FAILED with a generic reason (the traceback goes to
        the log), and :class:`~jobpulse.errors.JobCancelled` from ``job.update()`` CANCELLED. A host
        task cannot hand its job off (:class:`~jobpulse.handler.HandOff` ends it FAILED).

        Raises :class:`~jobpulse.errors.ServiceUnavailable` when Redis or the database fails under the
        job, which is then left for a retry of the same task (``autoretry_for=(ServiceUnavailable,)``);
        :class:`~jobpulse.errors.ConfigurationError` for a job of a kind this process does not run.
        """
        if not is_job_id(job_id):
            log.warning("job %r: not a job id, message dropped", job_id)
            return None
        try:
            context = self._connections()
            kind = self._kind_of_job(context, job_id)
            if kind is None:
                log.warning("job %s: no such job, message dropped", job_id)
                return None
            return run_job(context, job_id, _host_handler(kind, body))
        except LeaseTaken:
            log.info("job %s: another worker runs it; this delivery is dropped", job_id)
            return None
        except REDIS_ERRORS as exc:
            raise ServiceUnavailable(_UNREACHABLE) from exc
        except DATABASE_ERRORS as exc:
            raise ServiceUnavailable(_UNREACHABLE, code="database_unavailable") from exc

    def _kind_of_job(self, context: WorkerContext, job_id: str) -> Kind | None:
        record: Any = context.jobs.get(job_id)
        if record is None and any(k.resource == "videos" and k.handler is None for k in self.kinds):
            record = context.videos.get(job_id)
        if record is None:
            return None
        kind = self.kinds.get(record.kind)
        if kind is None:
            raise ConfigurationError(
                f"Job {job_id} is of kind {record.kind!r}, which this process does not know: add the "
                "module that declares it to JOBPULSE_KIND_MODULES."
            )
        if kind.handler is not None:
            raise ConfigurationError(
                f"Job {job_id} is of kind {kind.name!r}, which jobpulse's workers run, not a task of yours."
            )
        return kind

    def tracked(self, func: Callable[[JobRun], Any]) -> Callable[[str], str | None]:
        """Decorate a task body that takes a :class:`~jobpulse.handler.JobRun` into a function of the job
        id, for the host's Celery task decorator (put it under ``@app.task``)::

            @app.task(name="hostapp.build_report", autoretry_for=(ServiceUnavailable,), retry_backoff=True)
            @tracker.tracked
            def build_report(job: JobRun) -> dict[str, Any]: ...

        The task returns the terminal state's value, or None (see :meth:`run`).
        """

        @functools.wraps(func, assigned=("__module__", "__name__", "__qualname__", "__doc__"))
        def task(job_id: str) -> str | None:
            state = self.run(job_id, func)
            return None if state is None else state.value

        return task

    def celery_config(self) -> dict[str, Any]:
        """Settings for the host's Celery app (``app.conf.update(tracker.celery_config())``): jobpulse's
        broker, so that the API's ``POST /jobs/`` and the reaper reach the host's tasks; each of its own
        kinds' task routed to the kind's queue; late acks (a job whose worker died is delivered again);
        and the time limits that a job's FAILED reason names."""
        own = KindRegistry(kind for kind in self.kinds if kind.handler is None)
        app = create_celery(self.settings, own)
        try:
            return {key: app.conf[key] for key in _SHARED_CELERY_SETTINGS if app.conf.get(key) is not None}
        finally:
            app.close()

    def token(self, owner: str, ttl_seconds: int | None = None) -> str:
        """A bearer token for ``owner`` (``token_default_ttl_seconds`` unless given), for the front end
        that polls the job's progress on jobpulse's API."""
        settings = self.settings
        ttl = ttl_seconds or settings.token_default_ttl_seconds
        return mint_token(settings.require_secret_key(), owner, ttl)

    def close(self) -> None:
        """Close this process's connections (a later call opens new ones)."""
        with self._lock:
            context, self._context = self._context, None
        if context is not None and self._pid == os.getpid():
            context.close()


def _input_document(
    kind: Kind, document: Mapping[str, Any] | BaseModel | None, max_bytes: int
) -> dict[str, Any] | None:
    """The job's input as stored: a JSON kind's document validated by its model, None for the others."""
    if isinstance(document, BaseModel):
        document = document.model_dump(mode="json")
    if not isinstance(kind.input, JsonInput):
        if document:
            raise InvalidOptions(f"Jobs of kind {kind.name!r} take no input.")
        return None
    data = kind.parse_input(dict(document or {}))
    if len(orjson.dumps(data)) > max_bytes:
        raise PayloadTooLarge(f"The job's input is larger than the limit of {max_bytes} bytes.")
    return data


def _host_handler(kind: Kind, body: Callable[[JobRun], Any]) -> BoundHandler:
    """``body`` as the handler of ``kind``; a hand-off, which only jobpulse's workers can send on,
    becomes an error that ends the job FAILED."""
    bound = bind_handler(kind, body)

    def run(job: JobRun) -> Any:
        try:
            return bound.run(job)
        except HandOff:
            raise TypeError(
                f"The task of kind {kind.name!r} raised HandOff; a host application's task cannot hand "
                "its job off to jobpulse's workers"
            ) from None

    return BoundHandler(kind, run, bound.discard)
