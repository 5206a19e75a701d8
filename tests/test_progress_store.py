"""The Lua write rules, against a real Redis: forward only, atomically, under concurrent writers."""

from __future__ import annotations

import itertools
import random
import threading
import time
import uuid
from typing import cast

import orjson
import pytest
import redis

from jobpulse.keys import Keyspace
from jobpulse.progress import layout
from jobpulse.progress.record import ProgressUpdate
from jobpulse.progress.store import ProgressStore, WriteStatus
from jobpulse.settings import Settings
from jobpulse.states import State

pytestmark = pytest.mark.integration


@pytest.fixture
def store(settings: Settings, redis_client: redis.Redis) -> ProgressStore:
    return ProgressStore(redis_client, Keyspace.from_settings(settings))


def new_id() -> str:
    return str(uuid.uuid4())


def write(store: ProgressStore, job_id: str, update: ProgressUpdate, create: bool = False) -> WriteStatus:
    return store.write(job_id, update, owner="alice", kind="spreadsheet_import", create=create).status


def test_create_then_forward_updates(store: ProgressStore) -> None:
    job = new_id()
    assert write(store, job, ProgressUpdate(State.PENDING), create=True) is WriteStatus.ACCEPTED
    assert write(store, job, ProgressUpdate(State.PENDING), create=True) is WriteStatus.EXISTS
    assert write(store, job, ProgressUpdate(State.RUNNING, percent=10)) is WriteStatus.ACCEPTED
    assert write(store, job, ProgressUpdate(State.RUNNING, percent=5)) is WriteStatus.STALE
    assert write(store, job, ProgressUpdate(State.RUNNING, percent=10)) is WriteStatus.DUPLICATE
    assert write(store, job, ProgressUpdate(State.RUNNING, percent=10, message="x")) is WriteStatus.ACCEPTED
    raw = store.read(job)
    assert raw is not None
    assert raw[b"percent"] == b"10"
    assert raw[b"version"] == b"3"  # create, 10%, the message; not the stale or duplicate
    assert raw[b"owner"] == b"alice"


def test_terminal_states_stay_terminal(store: ProgressStore) -> None:
    job = new_id()
    write(store, job, ProgressUpdate(State.RUNNING, percent=50))
    assert write(store, job, ProgressUpdate(State.CANCELLED, percent=50)) is WriteStatus.ACCEPTED
    for late in (State.RUNNING, State.SUCCESS, State.FAILED, State.PENDING):
        result = store.write(job, ProgressUpdate(late, percent=99), owner="alice", kind="spreadsheet_import")
        assert result.status is WriteStatus.ILLEGAL
        assert result.state is State.CANCELLED
    raw = store.read(job)
    assert raw is not None and raw[b"state"] == b"CANCELLED"


def test_review_is_the_one_way_out_of_a_terminal_state(store: ProgressStore) -> None:
    job = new_id()
    write(store, job, ProgressUpdate(State.RUNNING, percent=50))
    assert write(store, job, ProgressUpdate(State.REVIEW_REQUIRED, percent=100)) is WriteStatus.ACCEPTED
    assert write(store, job, ProgressUpdate(State.RUNNING, percent=0)) is WriteStatus.ILLEGAL
    assert write(store, job, ProgressUpdate(State.SUCCESS, percent=100)) is WriteStatus.ACCEPTED
    assert write(store, job, ProgressUpdate(State.REJECTED_BAD_INPUT, percent=100)) is WriteStatus.ILLEGAL


def test_fallback_to_gpu_may_restart_percent(store: ProgressStore) -> None:
    job = new_id()
    write(store, job, ProgressUpdate(State.RUNNING, percent=60))
    assert write(store, job, ProgressUpdate(State.FALLBACK_TO_GPU, percent=0)) is WriteStatus.ACCEPTED
    assert write(store, job, ProgressUpdate(State.RUNNING, percent=5)) is WriteStatus.ACCEPTED
    assert write(store, job, ProgressUpdate(State.RUNNING, percent=4)) is WriteStatus.STALE


def test_null_fields_are_removed(store: ProgressStore) -> None:
    job = new_id()
    write(store, job, ProgressUpdate(State.RUNNING, percent=1, eta_seconds=30.5, stage="reading"))
    write(store, job, ProgressUpdate(State.RUNNING, percent=2, eta_seconds=None, stage="reading"))
    raw = store.read(job)
    assert raw is not None
    assert b"eta_seconds" not in raw
    assert raw[b"stage"] == b"reading"


def test_ttl_is_active_then_terminal(store: ProgressStore, redis_client: redis.Redis) -> None:
    job = new_id()
    key = store.keys.progress(job)
    write(store, job, ProgressUpdate(State.RUNNING, percent=1))
    active = redis_client.pttl(key)
    assert 0 < active <= store.keys.active_ttl_ms
    write(store, job, ProgressUpdate(State.SUCCESS, percent=100))
    terminal = redis_client.pttl(key)
    assert store.keys.active_ttl_ms < terminal <= store.keys.terminal_ttl_ms


def test_accepted_writes_are_published(store: ProgressStore, redis_client: redis.Redis) -> None:
    job = new_id()
    pubsub = redis_client.pubsub()  # type: ignore[no-untyped-call]
    pubsub.subscribe(store.keys.events(job))
    assert pubsub.get_message(timeout=1) is not None  # the subscribe confirmation
    write(store, job, ProgressUpdate(State.RUNNING, percent=7))
    write(store, job, ProgressUpdate(State.RUNNING, percent=3))  # stale: not published
    message = pubsub.get_message(timeout=1)
    assert message is not None
    # The bytes a poll answers, with no polling hint (what a stream's event sends), and no owner.
    stored = cast(bytes, redis_client.get(store.keys.progress(job)))
    assert message["data"] == layout.render(job.encode(), stored.split(layout.SEP), b"null")
    body = orjson.loads(message["data"])
    assert body["id"] == job and body["percent"] == 7 and body["version"] == 1
    assert b"alice" not in message["data"]
    assert pubsub.get_message(timeout=0.2) is None
    pubsub.close()


def test_concurrent_shuffled_writers_never_move_backwards(store: ProgressStore) -> None:
    """Eight threads hammer one job with shuffled updates; a watcher checks every read it makes."""
    job = new_id()
    write(store, job, ProgressUpdate(State.PENDING), create=True)
    updates = [ProgressUpdate(State.RUNNING, percent=p / 4) for p in range(401)]
    updates += [ProgressUpdate(State.SUCCESS, percent=100)] * 3 + [ProgressUpdate(State.FAILED, percent=100)]
    stop = threading.Event()
    seen: list[tuple[int, str, float]] = []
    failures: list[str] = []

    def writer(seed: int) -> None:
        mine = updates[:]
        random.Random(seed).shuffle(mine)
        for update in mine:
            write(store, job, update)

    def watcher() -> None:
        while not stop.is_set():
            raw = store.read(job)
            if raw is not None:
                seen.append((int(raw[b"version"]), raw[b"state"].decode(), float(raw.get(b"percent", b"0"))))

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(8)]
    watch = threading.Thread(target=watcher)
    watch.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(0.05)
    stop.set()
    watch.join()

    for (v1, s1, p1), (v2, s2, p2) in itertools.pairwise(seen):
        if v2 < v1:
            failures.append(f"version went back {v1} -> {v2}")
        if s1 == s2 and p2 < p1:
            failures.append(f"percent went back {p1} -> {p2} in {s1}")
        if State(s1).terminal and s2 != s1:
            failures.append(f"left terminal {s1} for {s2}")
    assert not failures, failures[:5]
    final = store.read(job)
    assert final is not None
    assert final[b"state"] in (b"SUCCESS", b"FAILED")
    # Only forward moves were accepted: the version counts distinct percents seen in RUNNING, at most.
    assert int(final[b"version"]) <= 1 + 401 + 1


def test_a_typical_running_record_stays_under_400_bytes(
    store: ProgressStore, redis_client: redis.Redis
) -> None:
    job = new_id()
    write(store, job, ProgressUpdate(State.PENDING), create=True)
    update = ProgressUpdate(
        State.RUNNING,
        percent=42.5,
        current=4250,
        total=10000,
        stage="validating",
        message="Validated 4,250 of 10,000 rows",
        eta_seconds=12.3,
    )
    write(store, job, update)
    key = store.keys.progress(job)
    assert redis_client.type(key) == b"string"
    size = redis_client.memory_usage(key, samples=0)
    assert size is not None and size < 400, size
