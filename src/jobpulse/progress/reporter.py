"""The worker's side of progress: one :class:`Reporter` per running job.

A job may call :meth:`Reporter.update` as often as it likes (every row of a million-row import); the
reporter keeps the latest values and writes at most one update per ``min_interval`` (5 a second by
default). State changes and the final write always go through. Each write also tells the job whether it
was cancelled: the Lua script refuses a write to a terminal record, and the reporter raises
:class:`~jobpulse.errors.JobCancelled` so the job stops at its next report (or at
:meth:`Reporter.check_cancelled`, for a job with nothing to report).
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Mapping
from typing import Any

from jobpulse.errors import JobCancelled, ServiceUnavailable
from jobpulse.progress.record import ProgressUpdate, encode_details
from jobpulse.progress.store import ProgressStore, WriteResult, WriteStatus
from jobpulse.states import RESULT_STATES, State

__all__ = ["Reporter", "finish_backoff"]

log = logging.getLogger(__name__)


def finish_backoff(attempt: int, *, first: float = 0.1, most: float = 2.0) -> float:
    """Seconds to wait before retry ``attempt`` (0-based) of a terminal write: exponential, capped,
    with full jitter in its upper half (so many workers hit by one blip do not retry in step)."""
    ceiling = min(most, first * 2.0 ** min(attempt, 30))
    return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 (jitter, not a secret)


class Reporter:
    """Coalescing progress writer for one job.

    ``details_max_bytes`` bounds the ``details`` object as JSON (``Settings.progress_details_max_bytes``).
    """

    def __init__(
        self,
        store: ProgressStore,
        job_id: str,
        *,
        owner: str,
        kind: str,
        state: State,
        min_interval: float = 0.2,
        finish_retry_seconds: float = 0.0,
        details_max_bytes: int = 2048,
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.owner = owner
        self.kind = kind
        self.state = state
        self.min_interval = min_interval
        self.finish_retry_seconds = finish_retry_seconds  # how long the terminal write is retried
        self.details_max_bytes = details_max_bytes
        self.writes = 0  # accepted writes, for tests and benchmarks
        self.current: float | None = None
        self.total: float | None = None
        self.percent: float | None = None
        self.stage: str | None = None
        self.message: str | None = None
        self.eta_seconds: float | None = None  # the job's own estimate; else one from percent and time
        self.details_json: str | None = None  # the latest details, as stored
        self._state_started = time.monotonic()
        self._last_write = float("-inf")
        self._dirty = False

    def update(
        self,
        current: float | None = None,
        total: float | None = None,
        *,
        percent: float | None = None,
        stage: str | None = None,
        message: str | None = None,
        eta_seconds: float | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Record progress; written now if the last write is ``min_interval`` old, else later.

        ``percent`` defaults to ``current / total`` when either is given; ``eta_seconds`` to an
        extrapolation of the time spent in the state so far (a job that knows its speed, like a transcode,
        passes its own). ``details`` replaces the previous details (``{}`` clears them; None keeps them):
        a JSON object of at most ``details_max_bytes``, else :class:`~jobpulse.errors.InvalidRequest` is
        raised here and nothing of this call is kept. ``update()`` with nothing new writes the same values
        again: a silent job notices a cancel that way. Cheap enough to call in a tight loop.
        """
        if details is not None:
            self.details_json = encode_details(details, self.details_max_bytes)
        if current is not None:
            self.current = current
        if total is not None:
            self.total = total
        if percent is not None:
            self.percent = percent
        elif (current is not None or total is not None) and self.current is not None and self.total:
            self.percent = min(100.0, 100.0 * self.current / self.total)
        if stage is not None:
            self.stage = stage
        if message is not None:
            self.message = message
        if eta_seconds is not None:
            self.eta_seconds = eta_seconds
        self._dirty = True
        if time.monotonic() - self._last_write >= self.min_interval:
            self.flush()

    def flush(self) -> None:
        """Write the latest values now, if there is anything new."""
        if self._dirty:
            self._write(self._update(self.state))

    def transition(
        self,
        state: State,
        *,
        percent: float | None = 0.0,
        stage: str | None = None,
        message: str | None = None,
    ) -> None:
        """Move the job to another active state (never coalesced); percent restarts, details are cleared."""
        self.state = state
        self.percent = percent
        self.current = self.total = None
        self.stage = stage
        self.message = message
        self.eta_seconds = None
        self.details_json = None
        self._state_started = time.monotonic()
        self._write(self._update(state))

    def finish(
        self, state: State, *, error_reason: str | None = None, message: str | None = None
    ) -> WriteResult | None:
        """The terminal write (never coalesced), keeping the last details. Returns None when Redis stayed
        unreachable.

        A terminal write that fails is retried with jittered, capped exponential backoff for up to
        ``finish_retry_seconds``: a blip must not leave the record RUNNING until it expires. (What is
        still wrong after that, the reaper repairs from the database.)
        """
        if state in RESULT_STATES:
            self.percent = 100.0
            if self.total is not None:
                self.current = self.total
        update = ProgressUpdate(
            state,
            percent=self.percent,
            current=self.current,
            total=self.total,
            stage=None,
            message=message,
            error_reason=error_reason,
            details=self.details_json,
        )
        deadline = time.monotonic() + self.finish_retry_seconds
        for attempt in itertools.count():
            try:
                result = self.store.write(self.job_id, update, owner=self.owner, kind=self.kind)
                if result.status is WriteStatus.ILLEGAL and result.state is State.PENDING:
                    # Our first write was lost (Redis was away then): move through the running state.
                    self.store.write(self.job_id, self._update(self.state), owner=self.owner, kind=self.kind)
                    result = self.store.write(self.job_id, update, owner=self.owner, kind=self.kind)
                return result
            except ServiceUnavailable:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(left, finish_backoff(attempt)))
        log.warning("job %s: could not write its terminal progress record", self.job_id)
        return None

    def check_cancelled(self) -> None:
        """Raise :class:`~jobpulse.errors.JobCancelled` if the job's record is terminal: someone else ended
        it (its owner cancelled or deleted it). One ``HGET``, no write: for a job that is busy but has no
        progress to report. Redis unreachable: nothing is raised (the job goes on; the next write tells).
        """
        try:
            state = self.store.state(self.job_id)
        except ServiceUnavailable:
            log.warning("job %s: progress storage unreachable, cancellation not checked", self.job_id)
            return
        if state is not None and state.terminal:
            raise JobCancelled(f"The job is already {state.value}.")

    def _eta(self) -> float | None:
        if not self.percent or self.percent >= 100.0:
            return None
        if self.eta_seconds is not None:
            return round(self.eta_seconds, 1)
        elapsed = time.monotonic() - self._state_started
        return round(elapsed * (100.0 - self.percent) / self.percent, 1)

    def _update(self, state: State) -> ProgressUpdate:
        return ProgressUpdate(
            state,
            percent=None if self.percent is None else round(self.percent, 2),
            current=self.current,
            total=self.total,
            stage=self.stage,
            message=self.message,
            eta_seconds=self._eta(),
            details=self.details_json,
        )

    def _write(self, update: ProgressUpdate) -> None:
        self._last_write = time.monotonic()
        self._dirty = False
        try:
            result = self.store.write(self.job_id, update, owner=self.owner, kind=self.kind)
        except ServiceUnavailable:
            # Progress is best effort: the job goes on, and the DB record stays the source of truth.
            log.warning("job %s: progress storage unreachable, update dropped", self.job_id)
            return
        if result.status is WriteStatus.ACCEPTED:
            self.writes += 1
        elif result.status is WriteStatus.ILLEGAL and result.state.terminal:
            raise JobCancelled(f"The job is already {result.state.value}.")
