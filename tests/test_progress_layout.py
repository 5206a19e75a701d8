"""The stored form of a progress record, against a real Redis: the Lua write rules through the string
layout, the ISO time the script formats, and reads that answer today's wire bytes without parsing."""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
import redis

from jobpulse.auth import mint_token
from jobpulse.keys import Keyspace
from jobpulse.progress import layout
from jobpulse.progress.lua import lua_source
from jobpulse.progress.record import (
    ProgressUpdate,
    encode_details,
    iso_ms,
    number_text,
    progress_body,
    unknown_body,
)
from jobpulse.progress.store import ProgressStore, WriteStatus
from jobpulse.settings import Settings
from jobpulse.states import State
from tests.conftest import SECRET

pytestmark = pytest.mark.integration

KIND = "spreadsheet_import"
ACCEPTED, DUPLICATE, STALE = WriteStatus.ACCEPTED, WriteStatus.DUPLICATE, WriteStatus.STALE
EXISTS, ILLEGAL = WriteStatus.EXISTS, WriteStatus.ILLEGAL
R, P, C = State.RUNNING, State.PENDING, State.CANCELLED


@pytest.fixture
def store(settings: Settings, redis_client: redis.Redis) -> ProgressStore:
    return ProgressStore(redis_client, Keyspace.from_settings(settings))


Step = tuple[ProgressUpdate, bool, WriteStatus]  # an update, whether it creates, what the script says


def up(state: State, expected: WriteStatus, **values: Any) -> Step:
    return ProgressUpdate(state, **values), False, expected


def create(state: State, expected: WriteStatus) -> Step:
    return ProgressUpdate(state), True, expected


# name, steps, the version after them
RULES: list[tuple[str, list[Step], int]] = [
    ("create once", [create(P, ACCEPTED), create(P, EXISTS), create(R, EXISTS)], 1),
    (
        "same values again",
        [up(R, ACCEPTED, percent=5, message="m")] + [up(R, DUPLICATE, percent=5, message="m")] * 2,
        1,
    ),
    (
        "percent back",
        [
            up(R, ACCEPTED, percent=5),
            up(R, STALE, percent=4.999),
            up(R, DUPLICATE, percent=5.0),
            up(R, ACCEPTED, percent=5.5),
        ],
        2,
    ),
    ("null percent never stale", [up(R, ACCEPTED, percent=50), up(R, ACCEPTED, percent=None)], 2),
    (
        "a new state may restart percent",
        [up(R, ACCEPTED, percent=60), up(State.FALLBACK_TO_GPU, ACCEPTED, percent=0)],
        2,
    ),
    (
        "any other field counts",
        [
            up(R, ACCEPTED, percent=1),
            up(R, ACCEPTED, percent=1, total=9),
            up(R, ACCEPTED, percent=1, total=9, details='{"a":1}'),
            up(R, DUPLICATE, percent=1, total=9, details='{"a":1}'),
        ],
        3,
    ),
    (
        "terminal stays",
        [up(R, ACCEPTED, percent=1), up(C, ACCEPTED, percent=1), up(C, ILLEGAL, percent=1), up(R, ILLEGAL)],
        2,
    ),
]


@pytest.mark.parametrize(
    ("steps", "version"),
    [(steps, version) for _, steps, version in RULES],
    ids=[name for name, _, _ in RULES],
)
def test_forward_only_and_duplicate_rules(store: ProgressStore, steps: list[Step], version: int) -> None:
    job = str(uuid.uuid4())
    for number, (update, create, expected) in enumerate(steps):
        result = store.write(job, update, owner="alice", kind=KIND, create=create)
        assert result.status is expected, (number, update)
    raw = store.read(job)
    assert raw is not None and int(raw[b"version"]) == version


def test_a_duplicate_only_refreshes_the_ttl(store: ProgressStore, redis_client: redis.Redis) -> None:
    job = str(uuid.uuid4())
    key = store.keys.progress(job)
    store.write(job, ProgressUpdate(R, percent=3), owner="alice", kind=KIND)
    before = redis_client.get(key)
    redis_client.pexpire(key, 5000)
    assert store.write(job, ProgressUpdate(R, percent=3), owner="alice", kind=KIND).status is DUPLICATE
    assert redis_client.get(key) == before
    assert redis_client.pttl(key) > 5000


def test_lua_iso_time_equals_python(redis_client: redis.Redis) -> None:
    rng = random.Random(13)
    moments = [0, 1, 999, 86_399_999, 86_400_000, 951_782_400_000, 951_868_799_999]  # 2000-02-29
    for year in (1970, 1999, 2000, 2024, 2026, 2100, 2400, 9999):
        for month, day in ((1, 1), (2, 28), (2, 29) if year % 4 == 0 and year != 2100 else (3, 1), (12, 31)):
            start = int(datetime(year, month, day, tzinfo=UTC).timestamp() * 1000)
            moments += [start, start - 1, start + 86_399_999]
    moments += [rng.randrange(0, 253_402_300_800_000) for _ in range(3000)]
    moments = [ms for ms in moments if 0 <= ms < 253_402_300_800_000]  # years 1970..9999
    script = (
        lua_source("iso_ms.lua")
        + "\nlocal out = {}\nfor i, ms in ipairs(ARGV) do out[i] = iso_ms(tonumber(ms)) end\nreturn out"
    )
    got = redis_client.eval(script, 0, *moments)
    assert [text.decode() for text in got] == [iso_ms(ms) for ms in moments]


UPDATES = [
    ProgressUpdate(P, percent=0.0, message="Waiting for a worker"),
    ProgressUpdate(
        R,
        percent=42.5,
        current=425_000,
        total=1_000_000,
        stage="validating",
        message="Processed 425,000 of 1,000,000 rows",
        eta_seconds=12.3,
    ),
    ProgressUpdate(R, percent=2.9999, current=0.1234567, total=3, eta_seconds=1e-5),
    ProgressUpdate(R, percent=7, message='quotes " \\ ünïcödé \u2028 \x1f \x00 🎉', stage="é" * 1200),
    ProgressUpdate(R, percent=8, details='{"b": [1, 2.50, null],  "a": {"ü": "x"}}'),
    ProgressUpdate(State.PROCESSING, percent=1, details=encode_details({"by": {"ok": 3}}, 2048)),
    ProgressUpdate(State.FAILED, percent=9, error_reason="r" * 70, details='{"x":1}'),
    ProgressUpdate(State.SUCCESS, percent=100, current=4, total=4),
]


def hash_of(update: ProgressUpdate, owner: str, updated_at: bytes) -> dict[bytes, bytes]:
    """The hash jobpulse 0.5 stored for ``update`` as a first write (its fields, as it encoded them)."""
    raw = {b"state": update.state.value.encode(), b"owner": owner.encode(), b"kind": KIND.encode()}
    raw |= {b"version": b"1", b"updated_at": updated_at}
    for name in ("percent", "current", "total", "eta_seconds"):
        value = getattr(update, name)
        if value is not None:
            raw[name.encode()] = number_text(value).encode()
    for name, text in update.texts().items():
        if text is not None:
            raw[name.encode()] = text.encode()
    if update.details is not None:
        raw[b"details"] = update.details.encode()
    return raw


@pytest.mark.parametrize("update", UPDATES, ids=[str(n) for n in range(len(UPDATES))])
async def test_a_poll_answers_the_bytes_of_todays_renderer(
    client: httpx.AsyncClient, app: Any, update: ProgressUpdate
) -> None:
    services = app.state.services
    owner, job = f"o-{uuid.uuid4()}", str(uuid.uuid4())
    headers = {"Authorization": f"Bearer {mint_token(SECRET, owner, 60)}"}
    await services.store.write(job, update, owner=owner, kind=KIND)
    response = await client.get(f"/jobs/{job}/progress/", headers=headers)
    raw = await services.store.read(job)
    today = hash_of(update, owner, raw[b"updated_at"])
    expected = orjson.dumps(progress_body(job, today, int(time.time() * 1000), services.policy))
    assert response.content == expected
    assert response.headers["etag"] == '"1"'
    if update.details is not None:  # inserted as written, unparsed
        assert b'"details":' + update.details.encode() + b',"eta_seconds"' in response.content
    again = await client.get(f"/jobs/{job}/progress/", headers={**headers, "If-None-Match": '"1"'})
    assert again.status_code == 304 and again.content == b""
    batch = await client.post("/progress/batch/", headers=headers, json={"ids": [job.upper(), job, "nope"]})
    known = progress_body(job, today, int(time.time() * 1000), services.policy)
    items = {job.upper(): known, job: known, "nope": unknown_body("nope", services.policy)}
    assert batch.content == orjson.dumps({"items": items})


def test_the_field_dict_is_what_the_hash_was(store: ProgressStore) -> None:
    job = str(uuid.uuid4())
    store.write(job, UPDATES[1], owner="alice", kind=KIND)
    raw = store.read(job)
    assert raw is not None
    updated_at = raw.pop(b"updated_at")
    assert abs(int(updated_at) - time.time() * 1000) < 60_000
    assert raw == {
        b"state": b"RUNNING",
        b"version": b"1",
        b"owner": b"alice",
        b"kind": KIND.encode(),
        b"percent": b"42.5",
        b"current": b"425000",
        b"total": b"1000000",
        b"stage": b"validating",
        b"message": b"Processed 425,000 of 1,000,000 rows",
        b"eta_seconds": b"12.3",
    }


async def test_the_deleted_marker_reads_unknown_and_refuses_writes(
    client: httpx.AsyncClient, app: Any, redis_client: redis.Redis
) -> None:
    services = app.state.services
    owner, job = f"o-{uuid.uuid4()}", str(uuid.uuid4())
    headers = {"Authorization": f"Bearer {mint_token(SECRET, owner, 60)}"}
    redis_client.set(services.store.keys.progress(job), layout.DELETED_MARKER, px=60_000)
    body = (await client.get(f"/jobs/{job}/progress/", headers=headers)).json()
    assert body["state"] == "UNKNOWN"
    batch = (await client.post("/progress/batch/", headers=headers, json={"ids": [job]})).json()
    assert batch["items"][job]["state"] == "UNKNOWN"
    for update in (ProgressUpdate(R, percent=5), ProgressUpdate(State.SUCCESS, percent=100)):
        result = await services.store.write(job, update, owner=owner, kind=KIND)
        assert result.status is ILLEGAL and result.state is C


LEGACY = {  # a hash record as jobpulse 0.5 wrote it
    "state": "RUNNING",
    "kind": KIND,
    "percent": "42.5",
    "current": "4250",
    "total": "10000",
    "stage": "validating",
    "message": "Validated 4,250 of 10,000 rows",
    "details": '{"a": 1}',
    "eta_seconds": "12.3",
    "updated_at": "1795771794123",
    "version": "17",
}


async def test_a_hash_record_of_before_0_6_is_read_then_replaced(
    client: httpx.AsyncClient, app: Any, redis_client: redis.Redis
) -> None:
    services = app.state.services
    owner, job = f"o-{uuid.uuid4()}", str(uuid.uuid4())
    key = services.store.keys.progress(job)
    headers = {"Authorization": f"Bearer {mint_token(SECRET, owner, 60)}"}
    hashed = {name.encode(): value.encode() for name, value in {**LEGACY, "owner": owner}.items()}
    for name, value in hashed.items():
        redis_client.hset(key, name, value)
    response = await client.get(f"/jobs/{job}/progress/", headers=headers)
    assert response.status_code == 200
    now_ms = int(time.time() * 1000)
    assert response.content == orjson.dumps(progress_body(job, hashed, now_ms, services.policy))
    assert response.headers["etag"] == '"17"'
    batch = (await client.post("/progress/batch/", headers=headers, json={"ids": [job]})).json()
    assert batch["items"][job]["version"] == 17
    assert await services.store.read(job) == hashed
    sync = ProgressStore(redis_client, services.store.keys)
    assert sync.state(job) is R
    assert (
        await services.store.write(job, ProgressUpdate(R, percent=40), owner=owner, kind=KIND)
    ).status is STALE
    result = await services.store.write(job, ProgressUpdate(R, percent=50), owner=owner, kind=KIND)
    assert result.status is ACCEPTED and result.version == 18
    assert redis_client.type(key) == b"string"
    assert (await client.get(f"/jobs/{job}/progress/", headers=headers)).json()["percent"] == 50


async def test_a_deleted_marker_hash_of_before_0_6_reads_unknown(
    client: httpx.AsyncClient, app: Any, redis_client: redis.Redis
) -> None:
    services = app.state.services
    owner, job = f"o-{uuid.uuid4()}", str(uuid.uuid4())
    redis_client.hset(
        services.store.keys.progress(job), mapping={"state": "CANCELLED", "version": 0, "deleted": 1}
    )
    headers = {"Authorization": f"Bearer {mint_token(SECRET, owner, 60)}"}
    assert (await client.get(f"/jobs/{job}/progress/", headers=headers)).json()["state"] == "UNKNOWN"
    result = await services.store.write(job, ProgressUpdate(R, percent=5), owner=owner, kind=KIND)
    assert result.status is ILLEGAL
