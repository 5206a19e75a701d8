"""What a job kind's handler gets and gives back: the public worker API.

A handler is a function (or an object with ``run`` and, optionally, ``discard``) that takes a
:class:`JobRun` and returns the job's result::

    def build(job: JobRun) -> dict[str, Any]:
        for done, row in enumerate(rows, 1):
            job.update(current=done, total=len(rows), stage="writing", details={"file": name})
        return {"url": url}          # SUCCESS, with this result in the job's record

Everything else is jobpulse's: the lease, the DB start and end, forward-only progress, the terminal
state written to the database before Redis, and the ending that an exception names:

- :class:`~jobpulse.errors.BadInput` ends the job REJECTED_BAD_INPUT, its message the user-facing reason;
- :class:`~jobpulse.errors.JobFailed` ends it FAILED with its message as the reason; any other exception
  ends it FAILED with a generic reason (the traceback goes to the worker's log, never to the user);
- :class:`~jobpulse.errors.JobCancelled` (raised by :meth:`JobRun.update` and
  :meth:`JobRun.check_cancelled` once the owner cancelled) ends it CANCELLED;
- :class:`HandOff` gives it to other workers (the OCR kind's GPU queue).

A handler that wants another terminal state, or a message on the last record, returns an
:class:`Outcome`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from jobpulse.auth import url_signature
from jobpulse.errors import BadInput, JobError
from jobpulse.kinds import Kind
from jobpulse.progress.reporter import Reporter
from jobpulse.settings import Settings, private_dir
from jobpulse.states import State

__all__ = ["FILE_NAME", "HandOff", "Handler", "JobRun", "Outcome", "Requeue", "input_path"]

# The name of a job's output file: no path, no leading dot, nothing a shell or a URL would read twice.
FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")


@dataclass
class Outcome:
    """How a job ended when its handler did not raise."""

    state: State = State.SUCCESS
    result: dict[str, Any] = field(default_factory=dict)  # the record's ``result``
    message: str | None = None  # shown on the last progress record
    error_reason: str | None = None  # for REJECTED_BAD_INPUT and FAILED: user-facing
    columns: dict[str, Any] = field(default_factory=dict)  # other columns of the kind's own table


@dataclass(frozen=True)
class Requeue:
    """A message a hand-off sends: run task ``task`` for the job on ``queue``, ``countdown`` seconds on."""

    task: str
    queue: str
    countdown: float = 0.0


class HandOff(JobError):
    """Raised by a handler to give the job up to other workers: the job moves to ``state`` (an active
    state, e.g. FALLBACK_TO_GPU) with ``message`` shown in its progress, then ``messages`` are sent."""

    code = "hand_off"

    def __init__(
        self, state: State, messages: Sequence[Requeue], *, message: str, stage: str | None = None
    ) -> None:
        assert not state.terminal
        super().__init__(message)
        self.state = state
        self.messages = tuple(messages)
        self.message = message
        self.stage = stage


def input_path(settings: Settings, job_id: str) -> Path:
    """The uploaded file of a job (``uploads/{id}/input<.ext>``)."""
    for path in sorted((settings.upload_dir / job_id).glob("input*")):
        return path
    raise BadInput("The uploaded file is no longer available; please upload it again.")


@dataclass
class JobRun:
    """One run of one job, as its handler sees it."""

    id: str
    kind: Kind
    owner: str
    input: Any  # a JSON kind's input, validated by its model (a model instance); else None
    options: Any  # the kind's options model (an instance) when it has one; else a dict
    settings: Settings
    reporter: Reporter
    record: Any = None  # the job's database row (jobpulse's own handlers read their columns)
    repository: Any = None  # the repository of the kind's table (jobpulse's own handlers write rows)

    @property
    def input_path(self) -> Path:
        """An upload kind's file, on the shared data dir."""
        return input_path(self.settings, self.id)

    def output_path(self, name: str) -> Path:
        """Where to write the output file ``name`` (letters, digits, ``.``, ``_``, ``-``): in the job's
        private folder on the shared data dir, served by ``GET /jobs/{id}/files/{name}`` once the job
        succeeded, removed with the job."""
        if not FILE_NAME.fullmatch(name):
            raise ValueError(f"An output file name is letters, digits, '.', '_' and '-', not {name!r}")
        return private_dir(self.settings.media_dir / self.id) / name

    def file_link(self, name: str, ttl_seconds: int | None = None) -> str:
        """A signed link to output file ``name`` that works without a token (``<a href>``, a mail) for
        ``ttl_seconds`` (default ``file_link_ttl_seconds``); root-relative, like every jobpulse link."""
        expires = int(time.time()) + (ttl_seconds or self.settings.file_link_ttl_seconds)
        path = f"{self.kind.prefix}/{self.id}/files/{name}"
        signature = url_signature(self.settings.require_secret_key(), path, expires)
        return f"{path}?expires={expires}&signature={signature}"

    def update(
        self,
        current: float | None = None,
        total: float | None = None,
        *,
        percent: float | None = None,
        stage: str | None = None,
        message: str | None = None,
        details: Mapping[str, Any] | None = None,
        eta_seconds: float | None = None,
    ) -> None:
        """Report progress (coalesced: call it as often as you like). ``percent`` defaults to
        ``current / total``; ``details`` is a small JSON object shown with the progress (``{}`` clears
        it). Raises :class:`~jobpulse.errors.JobCancelled` once the job was cancelled, and
        :class:`~jobpulse.errors.InvalidRequest` for details over their bound."""
        self.reporter.update(
            current,
            total,
            percent=percent,
            stage=stage,
            message=message,
            details=details,
            eta_seconds=eta_seconds,
        )

    def check_cancelled(self) -> None:
        """Raise :class:`~jobpulse.errors.JobCancelled` if the job was cancelled (or deleted); for a
        handler that goes a while without reporting progress."""
        self.reporter.check_cancelled()


@runtime_checkable
class Handler(Protocol):
    """A kind's handler as an object: ``run`` does the work; ``discard`` removes partial output of a
    job that did not succeed (files it wrote, rows it inserted). A plain function is a handler too."""

    def run(self, job: JobRun) -> Outcome | Mapping[str, Any] | None: ...

    def discard(self, job: JobRun) -> None: ...
