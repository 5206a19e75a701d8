"""The polling policy (docs/clients.md) as a pure state machine: no server, no clock."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from jobpulse.client.polling import Deadline, Poller, Polling, retry_after_seconds
from jobpulse.errors import AuthenticationError, InvalidRequest, NotFound
from jobpulse.states import State

JOB = "3f0c6a52-6b1e-4a44-9a53-2f1f2b9f8a10"
NO_JITTER = Polling(jitter=0)


def body(state: str = "RUNNING", version: int = 1, hint: int | None = 1000, **fields: Any) -> dict[str, Any]:
    return {
        "id": JOB,
        "kind": None if state == "UNKNOWN" else "spreadsheet_import",
        "state": state,
        "terminal": state in ("SUCCESS", "FAILED", "REJECTED_BAD_INPUT", "REVIEW_REQUIRED", "CANCELLED"),
        "version": version,
        "poll_after_ms": hint,
        **fields,
    }


def etag(version: int) -> dict[str, str]:
    return {"etag": f'"{version}"'}


def test_a_new_record_is_reported_and_the_hint_followed() -> None:
    poller = Poller(NO_JITTER)
    assert poller.headers() == {}
    step = poller.progress_answer(200, etag(3), body(version=3, hint=1000, percent=10))
    assert step.report is not None and step.report.percent == 10 and step.report.state is State.RUNNING
    assert step.delay == 1.0 and not step.final
    assert poller.headers() == {"If-None-Match": '"3"'}


def test_nothing_new_grows_the_delay_by_backoff_and_news_resets_it() -> None:
    poller = Poller(NO_JITTER)
    poller.progress_answer(200, etag(1), body(version=1, hint=1000))
    assert [poller.progress_answer(304, {}, None).delay for _ in range(3)] == [1.5, 2.25, 3.375]
    same = poller.progress_answer(200, etag(1), body(version=1, hint=1000))
    assert same.report is None and same.delay == pytest.approx(5.0625)
    news = poller.progress_answer(200, etag(2), body(version=2, hint=1000))
    assert news.report is not None and news.delay == 1.0


def test_the_delay_is_capped() -> None:
    poller = Poller(Polling(jitter=0, max_interval=4))
    poller.progress_answer(200, etag(1), body())
    assert max(poller.progress_answer(304, {}, None).delay for _ in range(20)) == 4


def test_jitter_stays_within_its_bounds() -> None:
    for rand, expected in [(0.0, 0.9), (0.5, 1.0), (0.999999, 1.1)]:
        poller = Poller(Polling(jitter=0.1), rand=itertools.repeat(rand).__next__)
        assert poller.progress_answer(200, etag(1), body(hint=1000)).delay == pytest.approx(
            expected, abs=1e-5
        )


def test_a_terminal_record_ends_the_poll() -> None:
    poller = Poller(NO_JITTER)
    step = poller.progress_answer(200, etag(9), body("REJECTED_BAD_INPUT", 9, None, error_reason="Row 3: no"))
    assert step.final and step.report is not None and step.report.error_reason == "Row 3: no"


def test_fallback_to_gpu_is_a_passing_state() -> None:
    poller = Poller(NO_JITTER)
    poller.progress_answer(200, etag(2), body("RUNNING", 2, percent=60))
    step = poller.progress_answer(200, etag(3), body("FALLBACK_TO_GPU", 3, hint=3000, percent=0))
    assert step.report is not None and step.report.state is State.FALLBACK_TO_GPU
    assert not step.final and step.delay == 3.0


def test_a_recreated_record_with_a_lower_version_is_new() -> None:
    poller = Poller(NO_JITTER)
    poller.progress_answer(200, etag(17), body(version=17, percent=50))
    step = poller.progress_answer(200, etag(1), body(version=1, percent=70))
    assert step.report is not None and step.report.percent == 70


def test_unknown_is_reported_once_and_checks_the_db_record_after_n_answers() -> None:
    poller = Poller(Polling(jitter=0, unknown_checks=3))
    steps = [poller.progress_answer(200, {}, body("UNKNOWN", 0, 2000)) for _ in range(3)]
    assert [s.report is not None for s in steps] == [True, False, False]
    assert [s.check_record for s in steps] == [False, False, True]
    assert [s.delay for s in steps] == [3.0, 4.5, 6.75]  # the UNKNOWN hint, growing
    assert poller.headers() == {}  # no ETag for UNKNOWN


def test_db_record_terminal_ends_the_poll_in_the_progress_shape() -> None:
    poller = Poller(Polling(jitter=0, unknown_checks=1))
    assert poller.progress_answer(200, {}, body("UNKNOWN", 0, 2000)).check_record
    record = {
        "id": JOB,
        "kind": "spreadsheet_import",
        "state": "SUCCESS",
        "terminal": True,
        "percent": 100.0,
        "error_reason": None,
        "options": {},
        "result": {"rows": 2},
    }
    step = poller.record_answer(200, record)
    assert step.final and step.report is not None
    assert step.report.state is State.SUCCESS and step.report.percent == 100.0
    assert step.report.version == 0 and step.report.poll_after_ms is None and step.report.message is None


def test_db_record_404_is_not_found_and_a_running_one_keeps_polling_slower() -> None:
    poller = Poller(Polling(jitter=0, unknown_checks=2))
    for _ in range(2):
        step = poller.progress_answer(200, {}, body("UNKNOWN", 0, 2000))
    assert step.check_record
    going_on = poller.record_answer(
        200, {"id": JOB, "kind": "spreadsheet_import", "state": "RUNNING", "terminal": False}
    )
    assert not going_on.final and going_on.report is None and going_on.delay == step.delay
    again = poller.progress_answer(200, {}, body("UNKNOWN", 0, 2000))
    assert again.delay > step.delay  # slower and slower
    assert not again.check_record  # the streak starts over: the DB is asked once per N UNKNOWNs
    assert poller.progress_answer(200, {}, body("UNKNOWN", 0, 2000)).check_record
    with pytest.raises(NotFound):
        poller.record_answer(404, {"error": {"code": "not_found", "message": "No such job."}})


def test_errors_back_off_and_retry_after_is_honoured() -> None:
    poller = Poller(Polling(jitter=0, error_delay=1))
    assert [poller.transport_error().delay for _ in range(4)] == [1, 2, 4, 8]
    assert poller.progress_answer(503, {"retry-after": "7"}, None).delay == 7
    assert poller.progress_answer(502, {}, None).delay == 30  # 2 ** 5, capped at max_interval
    assert poller.progress_answer(200, etag(1), body()).delay == 1.0  # an answer resets the count
    assert poller.transport_error().delay == 1


def test_auth_and_client_errors_end_the_poll() -> None:
    poller = Poller()
    with pytest.raises(AuthenticationError, match="expired"):
        poller.progress_answer(401, {}, {"error": {"code": "not_authenticated", "message": "Token expired."}})
    with pytest.raises(InvalidRequest):
        poller.progress_answer(400, {}, None)


def test_retry_after_forms() -> None:
    assert retry_after_seconds("3") == 3
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0  # in the past
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_deadline_cuts_the_last_wait() -> None:
    assert Deadline(None).wait(5) == (5, False)
    delay, ends = Deadline(0.5).wait(5)
    assert ends and 0 < delay <= 0.5
    assert Deadline(10).wait(1) == (1, False)


def test_policy_knobs_are_validated() -> None:
    for bad in [
        dict(min_interval=0),
        dict(min_interval=5, max_interval=1),
        dict(backoff=0.5),
        dict(jitter=1),
        dict(unknown_checks=0),
    ]:
        with pytest.raises(ValueError, match="need"):
            Polling(**bad)  # type: ignore[arg-type]
