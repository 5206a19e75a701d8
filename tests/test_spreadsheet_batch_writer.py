"""The background batch writer: every batch written in order, errors surface in the caller's thread."""

from __future__ import annotations

import threading
import time

import pytest

from jobpulse.spreadsheet.batch_writer import BatchWriter


def test_writes_every_batch_in_order_off_the_callers_thread() -> None:
    seen: list[list[int]] = []
    threads: set[str] = set()

    def write(batch: list[int]) -> int:
        threads.add(threading.current_thread().name)
        time.sleep(0.01)
        seen.append(batch)
        return len(batch)

    with BatchWriter(write) as writer:
        for start in range(0, 50, 10):
            writer.write(list(range(start, start + 10)))
        assert writer.close() == 50
    assert [n for batch in seen for n in batch] == list(range(50))
    assert threads == {"batch-writer"}


def test_an_error_is_raised_in_the_caller() -> None:
    def write(batch: list[int]) -> int:
        raise ValueError("disk full")

    writer = BatchWriter(write)
    writer.write([1])
    with pytest.raises(ValueError, match="disk full"):
        writer.close()


def test_the_jobs_own_error_wins_and_nothing_hangs() -> None:
    written: list[list[int]] = []

    def write(batch: list[int]) -> int:
        written.append(batch)
        return len(batch)

    def job() -> None:
        with BatchWriter(write) as writer:
            writer.write([1])
            raise KeyError("cancelled")

    with pytest.raises(KeyError):
        job()
    assert written == [[1]]
