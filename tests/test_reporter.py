"""The worker's reporter: coalesced writes, state changes and the final write always go through (the
final one retried through a Redis blip), cancellation is seen at the next write."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import orjson
import pytest
import redis

from jobpulse.errors import InvalidRequest, JobCancelled
from jobpulse.keys import Keyspace
from jobpulse.progress.layout import DELETED_MARKER
from jobpulse.progress.record import ProgressUpdate
from jobpulse.progress.reporter import Reporter, finish_backoff
from jobpulse.progress.store import ProgressStore, WriteResult
from jobpulse.settings import Settings
from jobpulse.states import State
from tests.services import RedisServer

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


class CountingStore(ProgressStore):
    """The real store, counting the writes tried (so a test sees the first one fail)."""

    tried = 0

    def write(self, job_id: str, update: ProgressUpdate, **kwargs: Any) -> WriteResult:
        self.tried += 1
        return super().write(job_id, update, **kwargs)


@pytest.mark.timeout(30)
def test_the_final_write_is_retried_through_a_redis_blip(settings: Settings, own_redis: RedisServer) -> None:
    client = redis.Redis.from_url(own_redis.url)
    store = CountingStore(client, Keyspace.from_settings(settings))
    job = str(uuid.uuid4())
    reporter = reporter_for(store, job)
    reporter.transition(State.RUNNING)
    results: list[WriteResult | None] = []
    own_redis.stop()
    try:
        retrying = Reporter(
            store, job, owner="bob", kind="spreadsheet_import", state=State.RUNNING, finish_retry_seconds=20
        )
        thread = threading.Thread(
            target=lambda: results.append(retrying.finish(State.FAILED, error_reason="x"))
        )
        tried = store.tried
        thread.start()
        deadline = time.monotonic() + 10
        while store.tried == tried:  # its first try failed: Redis is down
            assert time.monotonic() < deadline
            time.sleep(0.01)
        own_redis.start()  # back, empty (no persistence): the terminal write recreates the record
        thread.join(20)
        assert not thread.is_alive()
    finally:
        if own_redis.process is None:
            own_redis.start()
    assert results and results[0] is not None and results[0].accepted
    raw = store.read(job)
    assert raw is not None
    assert (raw[b"state"], raw[b"error_reason"], raw[b"owner"]) == (b"FAILED", b"x", b"bob")
    client.close()


@pytest.mark.timeout(30)
def test_the_final_write_gives_up_after_its_retry_time(settings: Settings, own_redis: RedisServer) -> None:
    client = redis.Redis.from_url(own_redis.url)
    store = ProgressStore(client, Keyspace.from_settings(settings))
    reporter = reporter_for(store, str(uuid.uuid4()))
    reporter.finish_retry_seconds = 0.5
    own_redis.stop()
    started = time.monotonic()
    try:
        assert reporter.finish(State.SUCCESS) is None
    finally:
        own_redis.start()
        client.close()
    assert 0.5 <= time.monotonic() - started < 10


def test_the_final_write_moves_a_record_left_pending_through_the_running_state(store: ProgressStore) -> None:
    job = str(uuid.uuid4())
    reporter = reporter_for(store, job)  # its transition to RUNNING was lost: the record says PENDING
    result = reporter.finish(State.SUCCESS)
    assert result is not None and result.accepted
    raw = store.read(job)
    assert raw is not None and raw[b"state"] == b"SUCCESS"


def test_backoff_grows_jittered_and_capped() -> None:
    waits = [finish_backoff(attempt) for attempt in range(10)]
    assert 0.05 <= waits[0] <= 0.1
    assert all(wait <= 2.0 for wait in waits)
    assert waits[-1] >= 1.0


def details_of(store: ProgressStore, job: str) -> Any:
    raw = store.read(job)
    assert raw is not None
    return orjson.loads(raw[b"details"]) if b"details" in raw else None


def test_details_are_replaced_cleared_by_an_empty_mapping_and_by_a_transition(store: ProgressStore) -> None:
    job = str(uuid.uuid4())
    reporter = reporter_for(store, job, interval=0)
    reporter.transition(State.RUNNING)
    reporter.update(1, 10)
    assert details_of(store, job) is None  # never set
    reporter.update(2, 10, details={"file": "a.csv", "counts": {"ok": 2}})
    assert details_of(store, job) == {"file": "a.csv", "counts": {"ok": 2}}
    reporter.update(3, 10)  # None: unchanged
    assert details_of(store, job) == {"file": "a.csv", "counts": {"ok": 2}}
    reporter.update(4, 10, details={"file": "b.csv"})  # replaced whole, not merged
    assert details_of(store, job) == {"file": "b.csv"}
    reporter.update(5, 10, details={})
    assert details_of(store, job) is None
    reporter.update(6, 10, details={"file": "c.csv"})
    reporter.transition(State.FALLBACK_TO_GPU)
    assert details_of(store, job) is None


def test_the_final_write_keeps_the_last_details(store: ProgressStore) -> None:
    job = str(uuid.uuid4())
    reporter = reporter_for(store, job, interval=60)
    reporter.transition(State.RUNNING)
    reporter.update(9, 10, details={"files": 9})  # coalesced: only the final write stores it
    result = reporter.finish(State.SUCCESS)
    assert result is not None and result.accepted
    assert details_of(store, job) == {"files": 9}


def test_details_over_the_bound_are_refused_at_update_and_the_record_keeps_its_own(
    store: ProgressStore,
) -> None:
    job = str(uuid.uuid4())
    store.write(job, ProgressUpdate(State.PENDING), owner="bob", kind="spreadsheet_import", create=True)
    reporter = Reporter(
        store,
        job,
        owner="bob",
        kind="spreadsheet_import",
        state=State.RUNNING,
        min_interval=0,
        details_max_bytes=2048,
    )
    reporter.transition(State.RUNNING)
    kept = {"names": ["n" * 96] * 15}  # about 1,500 bytes: more than a message may hold, under the bound
    reporter.update(1, 10, details=kept)
    assert details_of(store, job) == kept
    with pytest.raises(InvalidRequest, match="JOBPULSE_PROGRESS_DETAILS_MAX_BYTES"):
        reporter.update(2, 10, details={"names": ["n" * 96] * 30})
    refused: list[Any] = [{3: "x"}, {"x": object()}, {"x": float("nan")}]
    for details in refused:
        with pytest.raises(InvalidRequest):
            reporter.update(2, 10, details=details)
    assert details_of(store, job) == kept
    reporter.update(2, 10)
    raw = store.read(job)
    assert raw is not None and raw[b"current"] == b"2"
    assert details_of(store, job) == kept


def test_check_cancelled_raises_once_the_record_is_ended_by_someone_else(store: ProgressStore) -> None:
    job = str(uuid.uuid4())
    reporter = reporter_for(store, job)
    reporter.check_cancelled()  # PENDING
    reporter.transition(State.RUNNING)
    reporter.check_cancelled()
    store.write(job, ProgressUpdate(State.CANCELLED), owner="bob", kind="spreadsheet_import")
    with pytest.raises(JobCancelled, match="CANCELLED"):
        reporter.check_cancelled()


def test_check_cancelled_sees_the_marker_a_deleted_job_leaves(
    store: ProgressStore, redis_client: redis.Redis
) -> None:
    job = str(uuid.uuid4())
    reporter = reporter_for(store, job)
    reporter.check_cancelled()
    key = store.keys.progress(job)
    redis_client.set(key, DELETED_MARKER)  # what DELETE /jobs/{id}/ leaves (api/lifecycle.py)
    with pytest.raises(JobCancelled):
        reporter.check_cancelled()
    redis_client.delete(key)  # the marker jobpulse < 0.6 left, a hash
    redis_client.hset(key, mapping={"state": "CANCELLED", "version": 0, "deleted": 1})
    with pytest.raises(JobCancelled):
        reporter.check_cancelled()


def test_check_cancelled_does_not_raise_while_redis_is_away(
    settings: Settings, own_redis: RedisServer
) -> None:
    client = redis.Redis.from_url(own_redis.url)
    store = ProgressStore(client, Keyspace.from_settings(settings))
    reporter = reporter_for(store, str(uuid.uuid4()))
    own_redis.stop()
    try:
        reporter.check_cancelled()
    finally:
        own_redis.start()
        client.close()
