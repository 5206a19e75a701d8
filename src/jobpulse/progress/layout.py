"""The stored form of a progress record: one Redis string of the wire body's values, already JSON.

Fifteen parts separated by US (``\\x1f``, which JSON text never holds raw)::

    version US owner US updated_at_ms US state US kind US terminal US percent US current US total
        US stage US message US error_reason US details US eta_seconds US updated_at

``kind`` to ``eta_seconds`` (the *content*) are JSON texts that Python renders when a worker writes
(:func:`content`; ``details`` is the stored JSON, unparsed); the Lua script adds the version, the
times (``updated_at`` as ISO-8601) and the state. A read is one ``GET``, one ``split`` and one bytes
format with the body's constant keys (:func:`render`): no JSON is encoded or parsed on a poll, and the
record keeps only values (~180 bytes for a typical RUNNING record, where the full JSON body is ~380).

A hash left by jobpulse < 0.6 is converted in memory when read (:func:`from_hash`); the next accepted
write replaces it with a string.
"""

from __future__ import annotations

import time

import orjson

from jobpulse.errors import InvalidRequest
from jobpulse.progress.record import PollPolicy, ProgressUpdate, iso_ms, wire_number
from jobpulse.states import State

__all__ = [
    "DELETED_MARKER",
    "PARTS",
    "SEP",
    "Hints",
    "check_names",
    "content",
    "fields",
    "from_hash",
    "render",
    "state_of",
]

SEP = b"\x1f"
PARTS = 15
_NULL = b"null"
_BOOL = {False: b"false", True: b"true"}
# The wire body (record.progress_body's keys, in its order) with the parts of a record in their places.
_BODY = (
    b'{"id":"%s","kind":%s,"state":"%s","terminal":%s,"percent":%s,"current":%s,"total":%s,"stage":%s,'
    b'"message":%s,"error_reason":%s,"details":%s,"eta_seconds":%s,"updated_at":"%s","version":%s,'
    b'"poll_after_ms":%s}'
)
_NUMBERS = (b"percent", b"current", b"total", b"eta_seconds")
_TEXTS = (b"stage", b"message", b"error_reason")
_CONTENT = (b"kind", b"terminal", b"percent", b"current", b"total", *_TEXTS, b"details", b"eta_seconds")

# What DELETE leaves (api/lifecycle.py): CANCELLED, so every worker write is refused, and naming no
# owner, so every read answers UNKNOWN.
DELETED_MARKER = SEP.join([b"0", b"", b"0", State.CANCELLED.value.encode(), *[_NULL] * 10, b""])


def _json_number(value: float | None) -> bytes:
    return _NULL if value is None else orjson.dumps(wire_number(value))


def _json_text(value: str | None) -> bytes:
    return _NULL if value is None else orjson.dumps(value)


def _number(text: bytes) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def content(kind: str, update: ProgressUpdate) -> bytes:
    """The content parts of a record (``kind`` to ``eta_seconds``), each the JSON its body shows."""
    texts = update.texts()
    return SEP.join(
        [
            orjson.dumps(kind),
            _BOOL[update.state.terminal],
            _json_number(update.percent),
            _json_number(update.current),
            _json_number(update.total),
            _json_text(texts["stage"]),
            _json_text(texts["message"]),
            _json_text(texts["error_reason"]),
            _NULL if update.details is None else update.details.encode(),
            _json_number(update.eta_seconds),
        ]
    )


def check_names(owner: str, kind: str) -> None:
    """The owner lives in the header unquoted: it may not hold the separator (nor may the kind)."""
    if "\x1f" in owner or "\x1f" in kind:
        raise InvalidRequest("owner and kind may not contain the character U+001F")


def render(job_id: bytes, parts: list[bytes], poll_after_ms: bytes) -> bytes:
    """The wire body of a record split into its parts (``value.split(SEP)``), with its polling hint."""
    p = parts
    return _BODY % (
        job_id,
        p[4],
        p[3],
        p[5],
        p[6],
        p[7],
        p[8],
        p[9],
        p[10],
        p[11],
        p[12],
        p[13],
        p[14],
        p[0],
        poll_after_ms,
    )


def state_of(value: bytes) -> bytes:
    """The state of a stored record."""
    return value.split(SEP, 4)[3]


def fields(value: bytes) -> dict[bytes, bytes]:
    """The record as the field dict (bytes to bytes, absent fields left out) that hash records were:
    numbers as :class:`ProgressUpdate` stores them, texts decoded from JSON, ``details`` as JSON,
    ``updated_at`` in ms."""
    parts = value.split(SEP)
    raw = {b"state": parts[3], b"version": parts[0], b"updated_at": parts[2]}
    if parts[1]:
        raw[b"owner"] = parts[1]
    for name, item in zip(_CONTENT, parts[4:14], strict=True):
        if item == _NULL or name == b"terminal":
            continue
        if name == b"kind" or name in _TEXTS:
            raw[name] = orjson.loads(item).encode()
        else:
            raw[name] = item
    return raw


def from_hash(raw: dict[bytes, bytes]) -> bytes | None:
    """A hash record of jobpulse < 0.6 in today's stored form (in memory; nothing is written)."""
    if b"state" not in raw:
        return None
    if b"owner" not in raw:  # the marker a delete left
        return DELETED_MARKER
    state = State(raw[b"state"].decode())
    updated_ms = raw.get(b"updated_at", b"0")
    parts = [raw.get(b"version", b"0"), raw[b"owner"], updated_ms, raw[b"state"]]
    for name in _CONTENT:
        item = raw.get(name)
        if name == b"terminal":
            parts.append(_BOOL[state.terminal])
        elif item is None:
            parts.append(_NULL)
        elif name in _NUMBERS:
            parts.append(orjson.dumps(_number(item)))
        elif name == b"details":
            parts.append(item)
        else:
            parts.append(orjson.dumps(item.decode()))
    parts.append(iso_ms(int(updated_ms)).encode())
    return SEP.join(parts)


class Hints:
    """The ``poll_after_ms`` of a record as JSON bytes, pre-encoded for each answer of a policy."""

    def __init__(self, policy: PollPolicy) -> None:
        self.stall_ms = policy.stall_ms
        self.active = b"%d" % policy.active_ms
        self.idle = b"%d" % policy.idle_ms
        # state -> its fixed hint, or None where it depends on the time since the last write
        self.by_state: dict[bytes, bytes | None] = {}
        for state in State:
            moving = state in (State.RUNNING, State.PROCESSING)
            fixed = _NULL if state.terminal else None if moving else self.idle
            self.by_state[state.value.encode()] = fixed

    def hint(self, state: bytes, updated_ms: bytes, now_ms: int | None = None) -> bytes:
        """The hint for a record in ``state`` last written at ``updated_ms`` (as stored)."""
        fixed = self.by_state[state]
        if fixed is not None:
            return fixed
        if now_ms is None:
            now_ms = int(time.time() * 1000)
        return self.active if now_ms - int(updated_ms) < self.stall_ms else self.idle
