"""The worker's reporter: coalesced writes, state changes and the final write always go through,
cancellation is seen at the next write."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from jobpulse.errors import JobCancelled
from jobpulse.keys import Keyspace
from jobpulse.progress.record import ProgressUpdate
from jobpulse.progress.reporter import Reporter
from jobpulse.progress.store import ProgressStore
from jobpulse.settings import Settings
from jobpulse.states import State

pytestmark = pytest.mark.integration


@pytest.fixture
def store(settings: Settings, redis_client: redis.Redis) -> ProgressStore:
    return ProgressStore(redis_client, Keyspace.from_settings(settings))


def reporter_for(store: ProgressStore, job_id: str, interval: float = 0.2) -> Reporter:
    store.write(job_id, ProgressUpdate(State.PENDING), owner="bob", kind="spreadsheet_import", create=True)
    return Reporter(
        store, job_id, owner="bob", kind="spreadsheet_import", state=State.RUNNING, min_interval=interval
    )


def test_a_tight_loop_is_coalesced(store: ProgressStore) -> None:
    job = str(uuid.uuid4())
    reporter = reporter_for(store, job)
    reporter.transition(State.RUNNING)
    started = time.monotonic()
    calls = 300_000
    for n in range(1, calls + 1):
        reporter.update(n, calls)
    elapsed = time.monotonic() - started
    reporter.finish(State.SUCCESS)
    raw = store.read(job)
    assert raw is not None
    assert raw[b"state"] == b"SUCCESS"
    assert raw[b"percent"] == b"100"
    assert raw[b"current"] == str(calls).encode()
    # One write at the start of the loop, then at most one per 0.2 s.
    assert reporter.writes <= 2 + elapsed / 0.2, (reporter.writes, elapsed)


def test_the_latest_values_are_flushed_and_eta_estimated(store: ProgressStore) -> None:
    job = str(uuid.uuid4())
    reporter = reporter_for(store, job, interval=60)
    reporter.transition(State.RUNNING)
    time.sleep(0.05)
    reporter.update(25, 100, stage="validating", message="a quarter")  # coalesced: the interval is 60 s
    raw = store.read(job)
    assert raw is not None
    assert raw[b"percent"] == b"0"
    reporter.flush()
    raw = store.read(job)
    assert raw is not None
    assert raw[b"percent"] == b"25"
    assert raw[b"stage"] == b"validating"
    assert float(raw[b"eta_seconds"]) > 0


def test_cancellation_is_seen_at_the_next_write(store: ProgressStore) -> None:
    job = str(uuid.uuid4())
    reporter = reporter_for(store, job, interval=0)
    reporter.transition(State.RUNNING)
    reporter.update(1, 10)
    store.write(job, ProgressUpdate(State.CANCELLED), owner="bob", kind="spreadsheet_import")
    with pytest.raises(JobCancelled):
        reporter.update(2, 10)
    raw = store.read(job)
    assert raw is not None and raw[b"state"] == b"CANCELLED"


def test_an_explicit_percent_and_eta_stay_until_replaced(store: ProgressStore) -> None:
    job = str(uuid.uuid4())
    reporter = reporter_for(store, job, interval=0)
    reporter.transition(State.RUNNING)
    reporter.update(5_000, 20_000, percent=7.5, eta_seconds=40.0)  # units of one step of a larger job
    reporter.update()  # "no news": the same values again (how a silent job still notices a cancel)
    raw = store.read(job)
    assert raw is not None
    assert (raw[b"percent"], raw[b"eta_seconds"], raw[b"current"]) == (b"7.5", b"40", b"5000")
    version = raw[b"version"]
    reporter.update()
    raw = store.read(job)
    assert raw is not None and raw[b"version"] == version  # an identical write changes nothing
    store.write(job, ProgressUpdate(State.CANCELLED), owner="bob", kind="spreadsheet_import")
    with pytest.raises(JobCancelled):
        reporter.update()
