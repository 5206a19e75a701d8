"""Hostile input at the API: body limits on every route, bounded upload forms, bounded metric labels, no
500 from odd parameters, a race-free token cache, a relative slash redirect, and the submission rate.

Bodies are sent through the raw ASGI interface where it matters how much of them the app reads: the
``receive`` callable counts every byte the app pulls.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import threading
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy.exc
from fastapi import FastAPI

from jobpulse.api.app import create_app
from jobpulse.auth import TokenVerifier, mint_token
from jobpulse.settings import Settings
from tests.conftest import SECRET, app_client
from tests.jobs import CSV, submit_csv
from tests.services import RedisServer

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


class Sent:
    """What a raw ASGI call answered, and how many body bytes the app pulled through ``receive``."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.body = b""
        self.received = 0
        self.done = asyncio.Event()


async def call(
    app: Any, method: str, path: str, headers: dict[str, str], chunks: Iterable[bytes] = ()
) -> Sent:
    """One request through ``app``'s ASGI interface, its body sent in ``chunks`` (lazily, as a client
    streams it)."""
    sent = Sent()
    pending = iter(chunks)
    following = next(pending, None)

    async def receive() -> dict[str, Any]:
        nonlocal following
        if following is None:  # the body is over: wait for the answer, as a connection would
            await sent.done.wait()
            return {"type": "http.disconnect"}
        chunk, following = following, next(pending, None)
        sent.received += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": following is not None}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sent.status = message["status"]
            sent.headers = dict(message["headers"])
        elif message["type"] == "http.response.body":
            sent.body += message.get("body", b"")
            if not message.get("more_body"):
                sent.done.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
    }
    await asyncio.wait_for(app(scope, receive, send), 30)
    return sent


def megabytes(count: int, chunk: int = 64 * 1024) -> Iterator[bytes]:
    """``count`` MiB of body in ``chunk``-sized pieces, made as they are pulled."""
    piece = b"x" * chunk
    for _ in range(count * MIB // chunk):
        yield piece


@pytest.fixture
async def own_app(settings: Settings, own_redis: RedisServer) -> AsyncIterator[Any]:
    """The app on a Redis no worker watches (submitted jobs stay PENDING), called through raw ASGI."""
    app = create_app(settings.model_copy(update={"redis_url": own_redis.url}))
    yield app
    await app.state.services.aclose()


def code_of(sent: Sent) -> str:
    import orjson

    code: str = orjson.loads(sent.body)["error"]["code"]
    return code


# -- 4. body limits on every route ------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/progress/batch/",
        f"/jobs/{uuid.uuid4()}/review/",
        f"/jobs/{uuid.uuid4()}/cancel/",
        "/jobs/",
        "/nowhere",
    ],
)
async def test_a_declared_length_over_the_limit_is_413_before_any_byte_is_read(
    own_app: Any, auth: dict[str, str], path: str
) -> None:
    headers = {**auth, "content-type": "application/json", "content-length": str(150 * MIB)}
    sent = await call(own_app, "POST", path, headers, megabytes(150))
    assert sent.status == 413
    assert code_of(sent) == "payload_too_large"
    assert sent.received == 0
    assert sent.headers[b"connection"] == b"close"


async def test_an_upload_declared_over_its_kind_limit_is_413_before_any_byte_is_read(
    own_app: Any, settings: Settings, auth: dict[str, str]
) -> None:
    declared = settings.video_max_upload_bytes + 8 * MIB
    headers = {**auth, "content-type": "multipart/form-data; boundary=b", "content-length": str(declared)}
    sent = await call(own_app, "POST", "/media/videos/", headers, megabytes(8))
    assert (sent.status, code_of(sent), sent.received) == (413, "payload_too_large", 0)


async def test_a_malformed_content_length_is_400(own_app: Any, auth: dict[str, str]) -> None:
    for value in ("²", "12x", "9" * 40):
        sent = await call(own_app, "POST", "/progress/batch/", {**auth, "content-length": value}, [b"{}"])
        assert (sent.status, code_of(sent), sent.received) == (400, "invalid_content_length", 0), value


async def test_batch_without_a_token_reads_no_body(own_app: Any) -> None:
    """The token is checked before the body is read: 150 MB sent without a token costs the API nothing
    (before, the whole body was read and parsed first)."""
    sent = await call(
        own_app, "POST", "/progress/batch/", {"content-type": "application/json"}, megabytes(150)
    )
    assert sent.status == 401
    assert sent.received == 0


@pytest.mark.parametrize("path", ["/progress/batch/", f"/jobs/{uuid.uuid4()}/review/"])
async def test_a_chunked_body_is_cut_off_at_the_limit(
    own_app: Any, settings: Settings, auth: dict[str, str], path: str
) -> None:
    """Without a Content-Length the body is counted as it arrives: 413 once past the limit, and the rest
    is never pulled."""
    sent = await call(own_app, "POST", path, {**auth, "content-type": "application/json"}, megabytes(20))
    assert sent.status == 413
    assert code_of(sent) == "payload_too_large"
    assert sent.received <= settings.max_json_body_bytes + 64 * 1024


async def test_bodies_under_the_limit_still_work(own_app: Any, auth: dict[str, str]) -> None:
    ids = [str(uuid.uuid4()) for _ in range(500)]
    body = ('{"ids": ["' + '", "'.join(ids) + '"]}').encode()
    sent = await call(
        own_app, "POST", "/progress/batch/", {**auth, "content-type": "application/json"}, [body]
    )
    assert sent.status == 200
    assert sent.received == len(body)


# -- 5. upload forms ----------------------------------------------------------------------------------


def uploads_of(settings: Settings) -> set[str]:
    folder = settings.upload_dir
    return {entry.name for entry in folder.iterdir()} if folder.is_dir() else set()


@pytest.mark.parametrize(
    ("data", "content_type", "part_headers", "status", "code"),
    [
        ({f"extra{n}": "x" for n in range(16)}, "text/csv", {}, 400, "too_many_fields"),
        ({"options": "x" * (64 * 1024 + 1)}, "text/csv", {}, 413, "form_field_too_large"),
        ({}, "text/" + "c" * 300, {}, 400, "invalid_content_type"),
        ({}, "text/csv; x=\x00", {}, 400, "invalid_content_type"),
        ({}, "text/csv", {f"x-pad-{n}": "p" * 4000 for n in range(3)}, 400, "form_part_too_large"),
        ({}, "text/csv; " + "p" * 9000, {}, 400, "malformed_multipart"),  # python-multipart's line limit
    ],
)
async def test_form_parts_are_bounded_and_refusals_leave_nothing_on_disk(
    idle_client: httpx.AsyncClient,
    settings: Settings,
    auth: dict[str, str],
    data: dict[str, str],
    content_type: str,
    part_headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    before = uploads_of(settings)
    response = await idle_client.post(
        "/jobs/",
        headers=auth,
        data={"kind": "spreadsheet_import", **data},
        files={"file": ("people.csv", CSV, content_type, part_headers)},
    )
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert uploads_of(settings) == before


async def test_uploads_are_private_whatever_the_umask(
    idle_client: httpx.AsyncClient, settings: Settings, auth: dict[str, str]
) -> None:
    previous = os.umask(0)
    try:
        response = await submit_csv(idle_client, auth)
    finally:
        os.umask(previous)
    assert response.status_code == 202, response.text
    folder = settings.upload_dir / response.json()["id"]
    assert folder.stat().st_mode & 0o777 == 0o700
    assert settings.upload_dir.stat().st_mode & 0o777 == 0o700
    [file] = folder.iterdir()
    assert file.stat().st_mode & 0o777 == 0o600


# -- 6. metric labels ---------------------------------------------------------------------------------


async def test_metric_labels_come_from_closed_sets(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    for method in ("BREW", "X" * 200, "get"):
        await client.request(method, "/jobs/", headers=auth)
    await client.get(f"/no/such/{uuid.uuid4()}", headers=auth)  # 404
    await client.put("/jobs/", headers=auth)  # 405 on a known route
    await client.get(f"/jobs/{uuid.uuid4()}/progress/", headers=auth)
    metrics = (await client.get("/metrics")).text
    assert "BREW" not in metrics and "XXXX" not in metrics and 'method="get"' not in metrics
    assert 'jobpulse_http_requests_total{method="other",route="/jobs/",status="405"}' in metrics
    assert 'jobpulse_http_requests_total{method="GET",route="unmatched",status="404"}' in metrics
    assert 'jobpulse_http_requests_total{method="PUT",route="/jobs/",status="405"}' in metrics
    assert 'route="/jobs/{job_id}/progress/",status="200"' in metrics
    routes = {line.split('route="')[1].split('"')[0] for line in metrics.splitlines() if 'route="' in line}
    assert all(route == "unmatched" or route.startswith("/") for route in routes)
    assert not any(str(uuid.UUID(int=0))[:4] in route and "{" not in route for route in routes)


# -- 7. no 500 from odd parameters ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires", "signature"),
    [
        ("²", "a" * 43),
        ("1" * 5000, "a" * 43),
        ("9999999999", "é" * 43),
        ("9999999999", "a" * 5000),
        ("", "a" * 43),
    ],
)
async def test_odd_signed_links_are_401_not_500(
    client: httpx.AsyncClient, expires: str, signature: str
) -> None:
    response = await client.get(
        f"/media/videos/{uuid.uuid4()}/files/360p.mp4", params={"expires": expires, "signature": signature}
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "invalid_signature"


@pytest.mark.parametrize("cursor", ["²", "¹²", "1" + "0" * 20, str(2**31), "-1", "1" * 5000])
async def test_odd_row_cursors_are_400_not_500(
    idle_client: httpx.AsyncClient, auth: dict[str, str], cursor: str
) -> None:
    job_id = (await submit_csv(idle_client, auth)).json()["id"]
    response = await idle_client.get(f"/jobs/{job_id}/rows/", headers=auth, params={"cursor": cursor})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_cursor"
    ok = await idle_client.get(f"/jobs/{job_id}/rows/", headers=auth, params={"cursor": str(2**31 - 1)})
    assert ok.status_code == 200


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor(f"2026-01-01T00:00:00+00:00|{uuid.uuid4()}\x00"),
        _cursor("2026-01-01T00:00:00+00:00|\x00"),
        _cursor("2026-01-01T00:00:00+00:00|not-an-id"),
        _cursor(f"2026-01-01T00:00:00|{uuid.uuid4()}"),  # no time zone: not a cursor jobpulse made
        _cursor(f"2026-01-01T00:00:00+00:00|{uuid.uuid4()}" + "x" * 200),
        "\x00",
        "é",
    ],
)
@pytest.mark.parametrize("route", ["/jobs/", "/media/videos/"])
async def test_odd_list_cursors_are_400_not_500(
    client: httpx.AsyncClient, auth: dict[str, str], route: str, cursor: str
) -> None:
    response = await client.get(route, headers=auth, params={"cursor": cursor})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_cursor"


async def test_a_value_the_database_refuses_is_400(settings: Settings, auth: dict[str, str]) -> None:
    """The net under the input checks: a DataError (PostgreSQL's answer to a NUL, a value too long or out
    of range) is the client's fault, never a 500, and says nothing of the statement."""
    app = create_app(settings)
    api: FastAPI = app.app

    def refuse() -> None:
        raise sqlalchemy.exc.DataError("SELECT secret_column FROM jobs", {}, ValueError("NUL in string"))

    api.add_api_route("/test-refusal", refuse)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            response = await client.get("/test-refusal", headers=auth)
    finally:
        await app.state.services.aclose()
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert "secret_column" not in response.text


@pytest.mark.parametrize("owner", ["o" * 256, "bad\x00owner"])
async def test_tokens_naming_an_owner_the_database_cannot_store_are_401(
    client: httpx.AsyncClient, owner: str
) -> None:
    headers = {"Authorization": f"Bearer {mint_token(SECRET, owner, 60)}"}
    response = await submit_csv(client, headers)
    assert response.status_code == 401, response.text


# -- 8. the token cache under threads ---------------------------------------------------------------


@pytest.mark.parametrize("cache_seconds", [0.0, 1e-9])
def test_the_token_cache_survives_concurrent_callers(cache_seconds: float) -> None:
    """Entries that are always expired make every call take the removal path, from many threads at once
    (as the event loop and the threadpool do); before, two threads removing one entry raised KeyError."""
    verifier = TokenVerifier(SECRET, cache_seconds=cache_seconds, cache_size=4)
    tokens = [mint_token(SECRET, f"user{n}", 600) for n in range(6)]
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def hammer(offset: int) -> None:
        start.wait()
        try:
            for n in range(1500):
                token = tokens[(n + offset) % len(tokens)]
                assert verifier.owner(token) == f"user{(n + offset) % len(tokens)}"
        except BaseException as exc:
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, to meet the race
    try:
        threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert len(verifier._cache) <= 4


class _Lockstep(OrderedDict[str, tuple[str, float]]):
    """A cache that makes its callers take each step together: every thread reads the entry before any
    removes it, and removes it before any stores it again. That is the interleaving that raced, forced
    here rather than hoped for."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.read = threading.Barrier(parties, timeout=5)
        self.stored = threading.Barrier(parties, timeout=5)
        self.armed = False

    def get(self, key: str, default: Any = None) -> Any:
        value = super().get(key, default)
        if self.armed:
            self.read.wait()
        return value

    def __setitem__(self, key: str, value: tuple[str, float]) -> None:
        if self.armed:
            self.stored.wait()
        super().__setitem__(key, value)


def test_two_threads_meeting_one_expired_entry() -> None:
    verifier = TokenVerifier(SECRET, cache_seconds=60)
    token = mint_token(SECRET, "alice", 600)
    cache = _Lockstep(2)
    cache[token] = ("alice", 0.0)  # expired long ago
    cache.armed = True
    verifier._cache = cache
    errors: list[BaseException] = []

    def check() -> None:
        try:
            assert verifier.owner(token) == "alice"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=check) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert errors == []
    assert cache[token][0] == "alice"  # verified again and cached


# -- 10. the slash redirect -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "location"),
    [
        ("GET", "/jobs", "/jobs/"),
        ("GET", "/jobs?limit=5", "/jobs/?limit=5"),
        ("POST", "/jobs", "/jobs/"),
        ("GET", "/healthz/", "/healthz"),
    ],
)
async def test_the_slash_redirect_never_names_the_requests_host(
    client: httpx.AsyncClient, auth: dict[str, str], method: str, path: str, location: str
) -> None:
    response = await client.request(method, path, headers={**auth, "host": "evil.example"})
    assert response.status_code == 307
    assert response.headers["location"] == location


# -- Limits: the submission rate ----------------------------------------------------------------------


async def test_submissions_past_the_rate_are_429_before_the_upload_is_read(
    settings: Settings, own_redis: RedisServer, auth: dict[str, str], token: str
) -> None:
    limited = settings.model_copy(update={"redis_url": own_redis.url, "submit_rate_per_minute": 2})
    app = create_app(limited)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            assert (await submit_csv(client, auth)).status_code == 202
            video = await client.post("/media/videos/", headers=auth, files={"file": ("a.mp4", b"x")})
            assert video.status_code == 202  # both submission routes share the owner's budget
            refused = await submit_csv(client, auth)
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "rate_limited"
            assert 1 <= int(refused.headers["retry-after"]) <= 60
            stranger = {"Authorization": f"Bearer {mint_token(SECRET, f'other-{uuid.uuid4()}', 60)}"}
            assert (await submit_csv(client, stranger)).status_code == 202  # the limit is per owner
        headers = {"authorization": f"Bearer {token}", "content-type": "multipart/form-data; boundary=b"}
        for path in ("/jobs/", "/media/videos/"):
            sent = await call(app, "POST", path, headers, megabytes(4))
            assert (sent.status, code_of(sent), sent.received) == (429, "rate_limited", 0)
            assert sent.headers[b"retry-after"].isdigit()
    finally:
        await app.state.services.aclose()


async def test_a_rate_of_zero_is_no_limit(
    settings: Settings, own_redis: RedisServer, auth: dict[str, str]
) -> None:
    unlimited = settings.model_copy(update={"redis_url": own_redis.url, "submit_rate_per_minute": 0})
    async with app_client(unlimited) as client:
        for _ in range(3):
            assert (await submit_csv(client, auth)).status_code == 202


async def test_the_rate_window_ends(
    settings: Settings, own_redis: RedisServer, owner: str, auth: dict[str, str]
) -> None:
    """The owner's counter lives in Redis with the window's TTL: once it is gone, submissions pass again."""
    import redis.asyncio as aioredis

    from jobpulse.keys import Keyspace

    limited = settings.model_copy(update={"redis_url": own_redis.url, "submit_rate_per_minute": 1})
    async with app_client(limited) as client:
        assert (await submit_csv(client, auth)).status_code == 202
        assert (await submit_csv(client, auth)).status_code == 429
        key = Keyspace.from_settings(limited).rate(owner)
        async with aioredis.Redis.from_url(own_redis.url) as direct:
            assert 0 < await direct.pttl(key) <= 60_000
            await direct.pexpire(key, 1)  # the window ends now
            while await direct.exists(key):
                await asyncio.sleep(0.01)
        assert (await submit_csv(client, auth)).status_code == 202
