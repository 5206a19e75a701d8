"""The progress record: what a worker writes, and the body every progress endpoint answers.

The body is rendered when a worker writes (:mod:`jobpulse.progress.layout` stores it pre-rendered);
:func:`progress_body` builds the same body from a record's field dict, for the callers that want a dict.
``details`` is JSON text, checked when it is written, and inserted into the body unparsed.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from jobpulse.errors import InvalidRequest
from jobpulse.settings import Settings
from jobpulse.states import State

__all__ = [
    "UPDATE_FIELDS",
    "PollPolicy",
    "ProgressUpdate",
    "encode_details",
    "number_text",
    "progress_body",
    "progress_from_job",
    "render_progress",
    "render_unknown",
    "unknown_body",
    "wire_number",
]

# Fields a writer sets; "updated_at" and "version" are the Lua script's.
UPDATE_FIELDS = ("percent", "current", "total", "stage", "message", "error_reason", "eta_seconds", "details")
_TEXT_LIMIT = 1000  # characters; a longer text is cut (the record must stay small)
# details are never cut (a cut JSON text is broken): over their bound they are refused, see encode_details
_DETAILS_SETTING = "JOBPULSE_PROGRESS_DETAILS_MAX_BYTES"


@dataclass(frozen=True, slots=True)
class ProgressUpdate:
    """One write of a job's progress. ``None`` clears a field (null on the wire).

    ``details`` is the JSON text of an object (:func:`encode_details` makes it); it is never cut.
    """

    state: State
    percent: float | None = None
    current: float | None = None
    total: float | None = None
    stage: str | None = None
    message: str | None = None
    error_reason: str | None = None
    eta_seconds: float | None = None
    details: str | None = None

    def __post_init__(self) -> None:
        if self.state is State.UNKNOWN:
            raise InvalidRequest("UNKNOWN is never written; it is the absence of a record")
        if self.percent is not None and not (0.0 <= self.percent <= 100.0):
            raise InvalidRequest(f"percent must be within 0..100, not {self.percent}")
        for name in ("percent", "current", "total", "eta_seconds"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise InvalidRequest(f"{name} must be a finite number")
        if self.details is not None:
            # Rendering inserts the stored text as is: nothing but a JSON object may reach the record.
            try:
                parsed = orjson.loads(self.details)
            except orjson.JSONDecodeError:
                parsed = None
            if not isinstance(parsed, dict):
                raise InvalidRequest("details must be the JSON text of an object")

    def texts(self) -> dict[str, str | None]:
        """``stage``, ``message`` and ``error_reason`` as stored: cut to their limit."""
        return {
            "stage": None if self.stage is None else self.stage[:_TEXT_LIMIT],
            "message": None if self.message is None else self.message[:_TEXT_LIMIT],
            "error_reason": None if self.error_reason is None else self.error_reason[:_TEXT_LIMIT],
        }


def encode_details(details: Mapping[str, Any], max_bytes: int) -> str | None:
    """The JSON text of ``details`` for :class:`ProgressUpdate`, or None for an empty mapping (clears them).

    Raises :class:`InvalidRequest` for anything but a mapping with string keys and JSON values (finite
    numbers only), or for JSON longer than ``max_bytes``: refused whole, never cut.
    """
    if not isinstance(details, Mapping):
        raise InvalidRequest(f"details must be a mapping (a JSON object), not {type(details).__name__}")
    if not details:
        return None
    try:
        encoded = orjson.dumps(details if isinstance(details, dict) else dict(details))
    except TypeError as exc:  # orjson.JSONEncodeError is one
        raise InvalidRequest(
            f"details must be a JSON object with string keys and JSON values: {exc}"
        ) from None
    if len(encoded) > max_bytes:
        raise InvalidRequest(
            f"details are {len(encoded):,} bytes as JSON, over the limit of {max_bytes:,} bytes"
            f" (the setting {_DETAILS_SETTING})"
        )
    if b"null" in encoded and not _finite(details):  # orjson writes NaN and infinity as null
        raise InvalidRequest("details must hold finite numbers only (no NaN or infinity)")
    return encoded.decode()


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Mapping):
        return all(_finite(item) for item in value.values())
    if isinstance(value, list | tuple):
        return all(_finite(item) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return all(_finite(getattr(value, field.name)) for field in dataclasses.fields(value))
    return True


def number_text(value: float) -> str:
    """A number as a record keeps it: an integer without ``.0``, else at most 3 decimals."""
    if float(value).is_integer():
        return str(int(value))
    return repr(round(float(value), 3))


_INT_LIMIT = 2**63  # orjson writes integers up to 64 bits


def wire_number(value: float | None) -> int | float | None:
    """A number as the body shows it: what :func:`number_text` keeps, an int where it is integral."""
    if value is None:
        return None
    number = float(value)
    if number.is_integer() and abs(number) < _INT_LIMIT:
        return int(number)
    return round(number, 3)


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """The ``poll_after_ms`` hint: poll often while a job moves, seldom while it waits.

    - terminal: null (stop polling);
    - RUNNING / PROCESSING updated within ``stall_ms``: ``active_ms``;
    - PENDING, FALLBACK_TO_GPU, or a running job that has not moved for ``stall_ms``: ``idle_ms``;
    - UNKNOWN: ``unknown_ms`` (clients grow their own interval while an id stays unknown).
    """

    active_ms: int = 1000
    idle_ms: int = 3000
    unknown_ms: int = 2000
    stall_ms: int = 10_000

    @classmethod
    def from_settings(cls, settings: Settings) -> PollPolicy:
        return cls(
            active_ms=settings.poll_active_ms,
            idle_ms=settings.poll_idle_ms,
            unknown_ms=settings.poll_unknown_ms,
            stall_ms=int(settings.poll_stall_seconds * 1000),
        )

    def hint(self, state: State, updated_at_ms: int, now_ms: int) -> int | None:
        """The hint for a record in ``state`` last written at ``updated_at_ms``."""
        if state.terminal:
            return None
        if state in (State.RUNNING, State.PROCESSING) and now_ms - updated_at_ms < self.stall_ms:
            return self.active_ms
        return self.idle_ms


def _num(raw: bytes | None) -> int | float | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return float(raw)


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode()


def iso_ms(epoch_ms: int) -> str:
    """``2026-11-27T08:00:00.123Z`` for a millisecond timestamp (on every poll: gmtime, not datetime)."""
    seconds, millis = divmod(epoch_ms, 1000)
    t = time.gmtime(seconds)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (t[0], t[1], t[2], t[3], t[4], t[5], millis)  # noqa: UP031


def progress_body(job_id: str, raw: dict[bytes, bytes], now_ms: int, policy: PollPolicy) -> dict[str, Any]:
    """The wire body of a known record (``raw`` is the ``HGETALL`` reply).

    ``details`` is an :class:`orjson.Fragment` (the stored JSON, unparsed): serialize the body with orjson.
    """
    state = State(raw[b"state"].decode())
    updated_at_ms = int(raw.get(b"updated_at", b"0"))
    return {
        "id": job_id,
        "kind": _text(raw.get(b"kind")),
        "state": state.value,
        "terminal": state.terminal,
        "percent": _num(raw.get(b"percent")),
        "current": _num(raw.get(b"current")),
        "total": _num(raw.get(b"total")),
        "stage": _text(raw.get(b"stage")),
        "message": _text(raw.get(b"message")),
        "error_reason": _text(raw.get(b"error_reason")),
        "details": orjson.Fragment(raw[b"details"]) if b"details" in raw else None,
        "eta_seconds": _num(raw.get(b"eta_seconds")),
        "updated_at": iso_ms(updated_at_ms),
        "version": int(raw.get(b"version", b"0")),
        "poll_after_ms": policy.hint(state, updated_at_ms, now_ms),
    }


def unknown_body(job_id: str, policy: PollPolicy) -> dict[str, Any]:
    """The wire body for an id with no record the caller may see."""
    return {
        "id": job_id,
        "kind": None,
        "state": State.UNKNOWN.value,
        "terminal": False,
        "percent": None,
        "current": None,
        "total": None,
        "stage": None,
        "message": None,
        "error_reason": None,
        "details": None,
        "eta_seconds": None,
        "updated_at": None,
        "version": 0,
        "poll_after_ms": policy.unknown_ms,
    }


def progress_from_job(job_id: str, kind: str, update: ProgressUpdate, policy: PollPolicy) -> dict[str, Any]:
    """A progress body built from an update that could not be stored (Redis down): ``version`` 0."""
    body = unknown_body(job_id, policy)
    body.update(
        kind=kind,
        state=update.state.value,
        terminal=update.state.terminal,
        percent=update.percent,
        current=update.current,
        total=update.total,
        message=update.message,
        error_reason=update.error_reason,
        details=None if update.details is None else orjson.Fragment(update.details),
        updated_at=iso_ms(int(time.time() * 1000)),
        poll_after_ms=None if update.state.terminal else policy.idle_ms,
    )
    return body


def render_progress(job_id: str, raw: dict[bytes, bytes], now_ms: int, policy: PollPolicy) -> bytes:
    """:func:`progress_body` serialized."""
    return orjson.dumps(progress_body(job_id, raw, now_ms, policy))


def render_unknown(job_id: str, policy: PollPolicy) -> bytes:
    """:func:`unknown_body` serialized."""
    return orjson.dumps(unknown_body(job_id, policy))
