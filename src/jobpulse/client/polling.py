"""The polling policy of both clients (docs/clients.md), as a state machine that does no I/O.

:class:`Poller` is fed each answer and says what to do next: report a record, stop, ask the DB record,
and how long to wait. ``Client`` and ``AsyncClient`` only carry out its steps, so the two behave alike
and the rules can be tested without a server.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jobpulse.client.status import Progress
from jobpulse.errors import (
    AuthenticationError,
    Conflict,
    DeadlineExceeded,
    InvalidOptions,
    InvalidRequest,
    JobpulseError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
)
from jobpulse.states import State

__all__ = ["Deadline", "Poller", "Polling", "Step", "error_from_answer", "retry_after_seconds"]


@dataclass(frozen=True, slots=True)
class Polling:
    """The policy's knobs, in seconds; the defaults are the browser client's."""

    min_interval: float = 0.25
    max_interval: float = 30.0
    backoff: float = 1.5  # growth per answer that brought nothing new
    jitter: float = 0.1  # each delay is multiplied by a factor in [1 - jitter, 1 + jitter]
    unknown_checks: int = 5  # consecutive UNKNOWN answers before the DB record is asked once
    error_delay: float = 1.0  # the first delay after a failed request without Retry-After

    def __post_init__(self) -> None:
        if not 0 < self.min_interval <= self.max_interval:
            raise ValueError("need 0 < min_interval <= max_interval")
        if self.backoff < 1 or not 0 <= self.jitter < 1 or self.unknown_checks < 1 or self.error_delay <= 0:
            raise ValueError("need backoff >= 1, 0 <= jitter < 1, unknown_checks >= 1, error_delay > 0")


@dataclass(frozen=True, slots=True)
class Step:
    """What the client does after an answer."""

    report: Progress | None = None  # a record to hand to the caller
    final: bool = False  # the poll ends (with ``report``)
    delay: float = 0.0  # seconds until the next progress request
    check_record: bool = False  # ask the DB-backed record now, then feed the answer to the poller


_HINT_BEFORE_ANSWER_MS = 1000


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) in seconds; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


# The inverse of each exception's http_status: a client raises the exception the server raised.
_ERRORS: dict[int, type[JobpulseError]] = {
    kind.http_status: kind
    for kind in (InvalidRequest, AuthenticationError, NotFound, Conflict, PayloadTooLarge, InvalidOptions)
}
_ERRORS[403] = AuthenticationError


def error_from_answer(status: int, body: Any, retry_after: str | None = None) -> JobpulseError:
    """The jobpulse exception for an error answer: the one the server raised, by its status (with the
    answer's ``Retry-After`` on the ones that carry it)."""
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    text = str(message) if message else f"The server answered HTTP {status}."
    code_text = str(code) if code else None
    wait = retry_after_seconds(retry_after)
    if status == RateLimited.http_status:
        return RateLimited(text, code=code_text, retry_after=math.ceil(wait) if wait is not None else 1)
    if status >= 500:
        return ServiceUnavailable(text, code=code_text, retry_after=math.ceil(wait) if wait else 2)
    kind = _ERRORS.get(status, InvalidRequest)
    return kind(text, code=code_text)


class Poller:
    """One job's poll: feed it every answer, in order; it never asks for two requests at once."""

    def __init__(self, polling: Polling | None = None, *, rand: Callable[[], float] = random.random) -> None:
        self.polling = polling or Polling()
        self._rand = rand
        self.etag: str | None = None
        self.last: Progress | None = None  # the last record reported
        self._seen: tuple[int, State] | None = None  # version and state of the last known record
        self._hint = _HINT_BEFORE_ANSWER_MS / 1000
        self.quiet = 0
        self.unknowns = 0
        self.errors = 0

    def headers(self) -> dict[str, str]:
        """Headers for the next progress request (``If-None-Match`` once an ETag was seen)."""
        return {"If-None-Match": self.etag} if self.etag else {}

    def progress_answer(self, status: int, headers: Mapping[str, str], body: Any) -> Step:
        """The step after an answer of the progress endpoint (``body`` is parsed JSON, or None)."""
        if status == 304:
            return self._nothing_new()
        if status == 200 and isinstance(body, dict) and "state" in body:
            self.errors = 0
            record = Progress.from_body(body)
            if record.state is State.UNKNOWN:
                return self._unknown(record)
            self.etag = headers.get("etag") or self.etag
            self.unknowns = 0
            if self._seen == (record.version, record.state):
                return self._nothing_new(record.poll_after_ms)
            self._seen = (record.version, record.state)
            self.quiet = 0
            return self._report(record)
        return self._failed(status, headers, body)

    def transport_error(self) -> Step:
        """The step after a request that got no answer (refused, reset, timed out)."""
        self.errors += 1
        return Step(delay=self._error_delay())

    def record_answer(self, status: int | None, body: Any) -> Step:
        """The step after the DB-backed record was asked (``status`` None: no answer)."""
        if status == 200 and isinstance(body, dict) and "state" in body:
            record = Progress.from_body(body)
            if record.terminal:
                return self._report(record)
        elif status == 404:
            raise NotFound("No such job: it does not exist, or it is not yours.")
        elif status in (401, 403):
            raise error_from_answer(status, body)
        self.unknowns = 0
        return Step(delay=self._quiet_delay())

    def _report(self, record: Progress) -> Step:
        self.last = record
        if record.terminal:
            return Step(report=record, final=True)
        if record.poll_after_ms:
            self._hint = record.poll_after_ms / 1000
        return Step(report=record, delay=self._clamp(self._hint))

    def _unknown(self, record: Progress) -> Step:
        self.etag = None
        self._seen = None
        self.quiet += 1
        self.unknowns += 1
        if record.poll_after_ms:
            self._hint = record.poll_after_ms / 1000
        report = None
        if self.last is None or self.last.state is not State.UNKNOWN:
            report = self.last = record
        check = self.unknowns >= self.polling.unknown_checks
        return Step(report=report, delay=self._quiet_delay(), check_record=check)

    def _nothing_new(self, hint_ms: int | None = None) -> Step:
        self.errors = 0
        self.quiet += 1
        if hint_ms:
            self._hint = hint_ms / 1000
        return Step(delay=self._quiet_delay())

    def _failed(self, status: int, headers: Mapping[str, str], body: Any) -> Step:
        if status in (401, 403) or (400 <= status < 500 and status != 429):
            raise error_from_answer(status, body)
        self.errors += 1
        retry_after = retry_after_seconds(headers.get("retry-after"))
        if retry_after is not None:
            return Step(delay=retry_after)
        return Step(delay=self._error_delay())

    def _quiet_delay(self) -> float:
        return self._clamp(self._hint * self.polling.backoff**self.quiet)

    def _error_delay(self) -> float:
        return self._clamp(self.polling.error_delay * 2 ** (self.errors - 1))

    def _clamp(self, seconds: float) -> float:
        p = self.polling
        seconds *= 1 - p.jitter + 2 * p.jitter * self._rand()
        return min(p.max_interval, max(p.min_interval, seconds))


class Deadline:
    """An optional deadline on the monotonic clock, which cuts waits and ends the poll."""

    def __init__(self, timeout: float | None) -> None:
        self.at = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        """Seconds left (never negative), or None without a deadline."""
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def wait(self, delay: float) -> tuple[float, bool]:
        """How long to sleep, and whether the poll must end after that sleep (the deadline is reached)."""
        left = self.remaining()
        if left is None or delay < left:
            return delay, False
        return left, True

    def expired(self) -> DeadlineExceeded:
        return DeadlineExceeded("The job did not finish before the deadline; it goes on running.")
