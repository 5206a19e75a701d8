"""The progress record's pure functions: the wire body, the polling hint, update validation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from jobpulse.errors import InvalidRequest
from jobpulse.progress import layout
from jobpulse.progress.record import (
    PollPolicy,
    ProgressUpdate,
    encode_details,
    iso_ms,
    number_text,
    progress_body,
    progress_from_job,
    render_unknown,
    wire_number,
)
from jobpulse.states import State

POLICY = PollPolicy(active_ms=1000, idle_ms=3000, unknown_ms=2000, stall_ms=10_000)


@pytest.mark.parametrize("ms", [0, 999, 1_795_771_794_123, 4_102_444_800_001])
def test_iso_ms_matches_datetime(ms: int) -> None:
    expected = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    assert iso_ms(ms) == expected


def test_body_from_a_raw_record() -> None:
    raw = {
        b"state": b"RUNNING",
        b"kind": b"spreadsheet_import",
        b"percent": b"42.5",
        b"current": b"4250",
        b"total": b"10000",
        b"stage": b"validating",
        b"message": b"Validated 4,250 of 10,000 rows",
        b"eta_seconds": b"12.3",
        b"updated_at": b"1795771794123",
        b"version": b"17",
        b"owner": b"alice",
    }
    body = progress_body("3f0c", raw, 1_795_771_795_000, POLICY)
    assert body == {
        "id": "3f0c",
        "kind": "spreadsheet_import",
        "state": "RUNNING",
        "terminal": False,
        "percent": 42.5,
        "current": 4250,
        "total": 10000,
        "stage": "validating",
        "message": "Validated 4,250 of 10,000 rows",
        "error_reason": None,
        "details": None,
        "eta_seconds": 12.3,
        "updated_at": "2026-11-27T09:29:54.123Z",
        "version": 17,
        "poll_after_ms": 1000,
    }
    assert "owner" not in body


def test_unknown_body_has_nulls_and_a_hint() -> None:
    body = orjson.loads(render_unknown("x", POLICY))
    assert body["state"] == "UNKNOWN"
    assert body["version"] == 0
    assert body["poll_after_ms"] == 2000
    assert {k for k, v in body.items() if v is not None} == {
        "id",
        "state",
        "terminal",
        "version",
        "poll_after_ms",
    }


@pytest.mark.parametrize(
    ("state", "age_ms", "hint"),
    [
        (State.RUNNING, 500, 1000),
        (State.PROCESSING, 9_999, 1000),
        (State.RUNNING, 10_000, 3000),  # stalled
        (State.PENDING, 0, 3000),
        (State.FALLBACK_TO_GPU, 0, 3000),
        (State.SUCCESS, 0, None),
        (State.CANCELLED, 0, None),
    ],
)
def test_poll_hint(state: State, age_ms: int, hint: int | None) -> None:
    assert POLICY.hint(state, 1_000_000, 1_000_000 + age_ms) == hint


@pytest.mark.parametrize(
    "update",
    [
        {"state": State.UNKNOWN},
        {"state": State.RUNNING, "percent": 100.5},
        {"state": State.RUNNING, "percent": -1},
        {"state": State.RUNNING, "percent": float("nan")},
        {"state": State.RUNNING, "eta_seconds": float("inf")},
    ],
)
def test_invalid_updates_are_refused(update: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest):
        ProgressUpdate(**update)  # type: ignore[arg-type]


def test_numbers_are_kept_compactly_and_texts_cut() -> None:
    update = ProgressUpdate(State.RUNNING, percent=50.0, current=3, total=None, message="m" * 2000)
    assert number_text(50.0) == "50" and number_text(3) == "3" and number_text(2.34567) == "2.346"
    assert wire_number(50.0) == 50 and isinstance(wire_number(50.0), int)
    assert wire_number(2.34567) == 2.346 and wire_number(None) is None
    assert wire_number(1e20) == 1e20  # past 64 bits an integral number stays a float (orjson's limit)
    assert len(update.texts()["message"] or "") == 1000


def test_stored_details_are_rendered_as_json_in_place() -> None:
    details = encode_details({"file": "b.csv", "by_category": {"ok": 3, "bad": 1}, "ratio": 0.5}, 2048)
    assert details is not None
    parts = layout.content("spreadsheet_import", ProgressUpdate(State.RUNNING, details=details)).split(
        layout.SEP
    )
    stored = [b"2", b"alice", b"0", b"RUNNING", *parts, b"2026-11-27T08:00:00.000Z"]
    body = orjson.loads(layout.render(b"j", stored, b"null"))
    assert body["details"] == {"file": "b.csv", "by_category": {"ok": 3, "bad": 1}, "ratio": 0.5}
    assert list(body).index("details") == list(body).index("error_reason") + 1
    fallback = progress_from_job(
        "j", "spreadsheet_import", ProgressUpdate(State.RUNNING, details=details), POLICY
    )
    assert orjson.loads(orjson.dumps(fallback))["details"]["file"] == "b.csv"


def test_details_are_never_cut_like_text() -> None:
    details = encode_details({"names": ["x" * 96] * 15}, 2048)  # about 1,500 bytes
    assert details is not None and 1400 < len(details) <= 2048
    head = layout.content("spreadsheet_import", ProgressUpdate(State.RUNNING, details=details))
    assert layout.SEP + details.encode() + layout.SEP in head


def test_empty_details_clear_and_a_mapping_is_kept_in_order() -> None:
    assert encode_details({}, 2048) is None
    assert encode_details({"b": 1, "a": [1.5, None, "x"]}, 2048) == '{"b":1,"a":[1.5,null,"x"]}'


@dataclass
class Point:
    x: float


@pytest.mark.parametrize(
    ("details", "words"),
    [
        (
            {"name": "x" * 3000},
            "over the limit of 2,048 bytes (the setting JOBPULSE_PROGRESS_DETAILS_MAX_BYTES)",
        ),
        ({1: "a"}, "string keys"),
        ({"nested": {2: "b"}}, "string keys"),
        ({"when": object()}, "JSON values"),
        ({"ratio": math.nan}, "finite numbers"),
        ({"deep": [{"speed": math.inf}]}, "finite numbers"),
        ({"point": Point(-math.inf)}, "finite numbers"),
        (["not", "a", "mapping"], "must be a mapping"),
    ],
)
def test_details_that_are_not_a_small_json_object_are_refused(details: Any, words: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        encode_details(details, 2048)
    assert words in raised.value.message


@pytest.mark.parametrize("text", ["", "[1]", '"x"', "{", '{"a": NaN}'])
def test_an_update_takes_only_the_json_text_of_an_object(text: str) -> None:
    with pytest.raises(InvalidRequest):
        ProgressUpdate(State.RUNNING, details=text)
