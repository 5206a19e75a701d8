"""The state machine: terminal states stay terminal, the review is the one way out."""

from __future__ import annotations

import pytest

from jobpulse import TERMINAL_STATES, State
from jobpulse.states import allowed_sources, can_transition

ACTIVE = [s for s in State if not s.terminal and s is not State.UNKNOWN]


def test_terminal_set_is_explicit() -> None:
    assert {s.value for s in TERMINAL_STATES} == {
        "SUCCESS",
        "READY",
        "REVIEW_REQUIRED",
        "REJECTED_BAD_INPUT",
        "FAILED",
        "CANCELLED",
    }
    assert not State.UNKNOWN.terminal


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATES))
def test_terminal_states_are_never_left_except_by_review(terminal: State) -> None:
    for target in State:
        allowed = can_transition(terminal, target)
        if terminal is State.REVIEW_REQUIRED and target in (State.SUCCESS, State.REJECTED_BAD_INPUT):
            assert allowed
        else:
            assert not allowed, (terminal, target)


@pytest.mark.parametrize("state", ACTIVE)
def test_active_states_may_update_and_end(state: State) -> None:
    assert can_transition(state, state)
    for end in (State.FAILED, State.CANCELLED, State.REJECTED_BAD_INPUT):
        assert can_transition(state, end)
    assert not can_transition(state, State.PENDING) or state is State.PENDING
    assert not can_transition(state, State.UNKNOWN)


def test_allowed_sources_of_a_running_write() -> None:
    assert allowed_sources(State.RUNNING) == {State.PENDING, State.RUNNING, State.FALLBACK_TO_GPU}
    assert allowed_sources(State.READY) == {State.PROCESSING}


def test_no_state_reaches_unknown() -> None:
    assert allowed_sources(State.UNKNOWN) == set()
