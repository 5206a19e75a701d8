"""How a job is recovered or given up outside its own run: its task sent again, its end written FAILED,
or the database's end copied to Redis. The reaper (:mod:`jobpulse.worker.reaper`) and the task's hooks
(:mod:`jobpulse.worker.task`) use them."""

from __future__ import annotations

import logging
from collections.abc import Callable

from jobpulse.db.models import Tracked
from jobpulse.progress.record import ProgressUpdate
from jobpulse.progress.store import WriteResult, WriteStatus
from jobpulse.states import RESULT_STATES, State
from jobpulse.worker.context import WorkerContext

__all__ = ["GAVE_UP_REASON", "end_failed", "mirror_terminal"]

log = logging.getLogger(__name__)

GAVE_UP_REASON = (
    "The job stopped unexpectedly several times and was given up. It may be too large or damaged; "
    "please try again later, and if it keeps failing, contact support."
)


def _number(raw: bytes | None) -> float | None:
    return None if raw is None else float(raw)


def mirror_terminal(context: WorkerContext, record: Tracked) -> WriteResult:
    """Write the database's terminal state of ``record`` (and its error_reason) to Redis.

    Safe at any time: the Lua script only moves a record forward, so a stale copy is dropped. Fields the
    database does not keep (current, total) are taken from the Redis record when there is one; a record
    still PENDING (the worker's first write was lost) is moved through the running state.
    """
    state = State(record.state)
    raw = context.store.read(record.id) or {}
    shown = raw.get(b"state")
    if shown == state.value.encode():
        return WriteResult(WriteStatus.DUPLICATE, int(raw.get(b"version", b"0")), state)
    total = _number(raw.get(b"total"))
    current = total if state in RESULT_STATES and total is not None else _number(raw.get(b"current"))
    percent = record.percent if record.percent is not None else _number(raw.get(b"percent"))
    update = ProgressUpdate(
        state,
        percent=100.0 if state in RESULT_STATES else percent,
        current=current,
        total=total,
        error_reason=record.error_reason,
    )
    kind = context.kind_of(record)
    result = context.store.write(record.id, update, owner=record.owner, kind=kind.name)
    if result.status is WriteStatus.ILLEGAL and result.state is State.PENDING:
        # The worker's first write was lost (Redis was away): a result state is not reached from PENDING.
        running = ProgressUpdate(kind.running_state, percent=percent)
        context.store.write(record.id, running, owner=record.owner, kind=kind.name)
        result = context.store.write(record.id, update, owner=record.owner, kind=kind.name)
    return result


def end_failed(
    context: WorkerContext,
    record: Tracked,
    reason: str,
    discard: Callable[[Tracked], None] | None = None,
) -> bool:
    """End an active job FAILED with ``reason``: the database first, its partial output removed (by
    ``discard``, its handler's), then Redis. False when it had ended already (then Redis gets the state
    it ended in)."""
    records = context.records(context.kind_of(record))
    ended = records.finish(record.id, State.FAILED, error_reason=reason)
    current = records.get(record.id)
    if current is None:
        return False
    if ended and discard is not None:
        try:
            discard(current)
        except Exception:
            log.exception("job %s: partial output not removed", record.id)
    if State(current.state).terminal:
        mirror_terminal(context, current)
    return ended
