"""Job states, the terminal set and the transitions the progress store allows.

This module is the single source of truth: the Lua write script receives, for each write, the set of
states it may come from (:func:`allowed_sources`), so the rules live here and nowhere else.
"""

from __future__ import annotations

import enum

__all__ = ["RESULT_STATES", "TERMINAL_STATES", "State", "allowed_sources", "can_transition"]


class State(enum.StrEnum):
    """The state of a job or video, as sent on the wire (UPPERCASE strings)."""

    PENDING = "PENDING"  # accepted and queued; written to Redis at submission
    RUNNING = "RUNNING"  # a worker is processing a job
    PROCESSING = "PROCESSING"  # a worker is processing a video
    FALLBACK_TO_GPU = "FALLBACK_TO_GPU"  # the CPU attempt gave up; re-queued for a GPU worker
    SUCCESS = "SUCCESS"  # a job finished; the result is in the DB record
    READY = "READY"  # a video's renditions and thumbnail are available
    REVIEW_REQUIRED = "REVIEW_REQUIRED"  # finished under the confidence threshold; a person must review
    REJECTED_BAD_INPUT = "REJECTED_BAD_INPUT"  # the input is not acceptable; error_reason says why
    FAILED = "FAILED"  # an internal error; error_reason is user-safe
    CANCELLED = "CANCELLED"  # cancelled by its owner
    UNKNOWN = "UNKNOWN"  # progress endpoints only: no record (never existed, not yours, or expired)

    @property
    def terminal(self) -> bool:
        """Whether the state is final (a job in it never changes again, review aside)."""
        return self in TERMINAL_STATES


TERMINAL_STATES: frozenset[State] = frozenset(
    {
        State.SUCCESS,
        State.READY,
        State.REVIEW_REQUIRED,
        State.REJECTED_BAD_INPUT,
        State.FAILED,
        State.CANCELLED,
    }
)

# Terminal states that carry a result: the bar is full, and the job's output is kept.
RESULT_STATES: frozenset[State] = frozenset({State.SUCCESS, State.READY, State.REVIEW_REQUIRED})

_ENDINGS = frozenset({State.REJECTED_BAD_INPUT, State.FAILED, State.CANCELLED})

# Where each state may go. A state may also "go" to itself: a progress update within the state.
_TRANSITIONS: dict[State, frozenset[State]] = {
    State.PENDING: frozenset({State.RUNNING, State.PROCESSING, State.FALLBACK_TO_GPU}) | _ENDINGS,
    State.RUNNING: frozenset({State.FALLBACK_TO_GPU, State.SUCCESS, State.REVIEW_REQUIRED}) | _ENDINGS,
    State.FALLBACK_TO_GPU: frozenset({State.RUNNING, State.SUCCESS, State.REVIEW_REQUIRED}) | _ENDINGS,
    State.PROCESSING: frozenset({State.READY}) | _ENDINGS,
    # The one way out of a terminal state: the owner's review.
    State.REVIEW_REQUIRED: frozenset({State.SUCCESS, State.REJECTED_BAD_INPUT}),
}


def can_transition(source: State, target: State) -> bool:
    """Whether a record in ``source`` may be moved to ``target`` (or updated within it)."""
    if State.UNKNOWN in (source, target):
        return False  # the absence of a record: never stored, never left
    if source == target:
        return not source.terminal
    return target in _TRANSITIONS.get(source, frozenset())


def allowed_sources(target: State) -> frozenset[State]:
    """The states from which a write of ``target`` is accepted."""
    return frozenset(source for source in State if can_transition(source, target))
