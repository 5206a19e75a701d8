"""The CLI's display: server text shown literally, the bar coloured by state, a line per change off a tty."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from jobpulse.client.display import JobDisplay, summary
from jobpulse.client.status import Progress


def record(state: str, version: int, **fields: Any) -> Progress:
    terminal = state in ("SUCCESS", "FAILED", "REJECTED_BAD_INPUT")
    return Progress.from_body(
        {
            "id": "j",
            "kind": "spreadsheet_import",
            "state": state,
            "terminal": terminal,
            "version": version,
            **fields,
        }
    )


def test_the_live_bar_shows_server_text_literally_and_takes_the_states_colour() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=140, color_system="standard")
    with JobDisplay(console, "j") as display:
        display.show(
            record(
                "RUNNING", 2, percent=42.5, stage="validating", message="Row [3] of [bold]x", eta_seconds=75
            )
        )
        display._bar.refresh()
        running = out.getvalue()
        display.show(record("FAILED", 3, percent=42.5, error_reason="Something went wrong on our side."))
        display._bar.refresh()
        failed = out.getvalue()[len(running) :]
    assert "Row [3] of [bold]x" in running and "validating" in running
    assert "42.5%" in running and "ETA 1:15" in running
    assert "\x1b[36m━" in running  # cyan bar while running
    assert "\x1b[1;31m━" in failed  # bold red once failed


def test_off_a_terminal_each_change_is_a_line_and_the_summary_carries_the_reason() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200)
    with JobDisplay(console, "j") as display:
        display.show(record("PENDING", 1, percent=0))
        display.show(record("REJECTED_BAD_INPUT", 2, percent=10, error_reason="Row 2: 'x' is not an email."))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("PENDING") and "0.0%" in lines[0]
    assert lines[1].startswith("REJECTED_BAD_INPUT") and lines[2] == "Row 2: 'x' is not an email."
    buffer = io.StringIO()
    Console(file=buffer, width=200).print(
        summary(record("SUCCESS", 3, percent=100, message="Imported 2 rows"))
    )
    assert buffer.getvalue().split() == ["SUCCESS", "100.0%", "Imported", "2", "rows"]


def test_the_sdk_record_carries_details_and_the_summary_shows_them_short() -> None:
    details = {"file": "people.csv", "counts": {"valid": 2, "invalid": 1}}
    running = record("RUNNING", 4, percent=50, message="Half", details=details, a_field_of_a_newer_server=1)
    assert running.details == details
    assert running.as_dict()["details"] == details
    assert hash(running) == hash(record("RUNNING", 4, percent=50, message="Half", details=details))
    assert record("RUNNING", 4).details is None  # an older server sends none
    assert record("RUNNING", 4, details="not an object").details is None
    buffer = io.StringIO()
    Console(file=buffer, width=200).print(summary(running))
    assert buffer.getvalue().rstrip().endswith('Half  (file: people.csv, counts: {"valid": 2, "invalid": 1})')
    long = summary(record("RUNNING", 5, details={"names": ["x" * 20] * 10})).plain
    assert long.endswith("…)") and len(long) < 100
