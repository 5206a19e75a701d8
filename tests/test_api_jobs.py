"""The DB-backed job endpoints: submission at the door, listing, cancel, TTL expiry, uploads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from jobpulse.settings import Settings
from tests.conftest import app_client
from tests.jobs import CSV, submit_csv
from tests.services import RedisServer

pytestmark = pytest.mark.integration


class StreamedUpload:
    """A multipart body sent chunk by chunk (``kind`` first, then the file), counting what was sent."""

    def __init__(self, kind: str, *, chunk: bytes, chunks: int) -> None:
        self.kind = kind
        self.chunk = chunk
        self.chunks = chunks
        self.sent = 0

    async def body(self) -> AsyncIterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="kind"\r\n\r\n' + self.kind.encode() + b"\r\n"
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n\r\n'
        for _ in range(self.chunks):
            self.sent += len(self.chunk)
            yield self.chunk
        yield b"\r\n--b--\r\n"

    async def post(self, client: httpx.AsyncClient, auth: dict[str, str]) -> httpx.Response:
        headers = {**auth, "content-type": "multipart/form-data; boundary=b"}
        return await client.post("/jobs/", headers=headers, content=self.body())


async def test_expired_record_reads_unknown_while_db_keeps_terminal_state(
    settings: Settings, auth: dict[str, str], own_redis: RedisServer
) -> None:
    # A Redis of its own: no worker takes the job before it is cancelled.
    idle = settings.model_copy(update={"terminal_progress_ttl_seconds": 1, "redis_url": own_redis.url})
    async with app_client(idle) as client:
        job_id = (await submit_csv(client, auth)).json()["id"]
        cancelled = await client.post(f"/jobs/{job_id}/cancel/", headers=auth)
        assert cancelled.status_code == 202
        assert cancelled.json()["state"] == "CANCELLED"
        assert cancelled.json()["poll_after_ms"] is None
        await asyncio.sleep(1.3)
        progress = (await client.get(f"/jobs/{job_id}/progress/", headers=auth)).json()
        assert progress["state"] == "UNKNOWN"
        record = (await client.get(f"/jobs/{job_id}/", headers=auth)).json()
        assert record["state"] == "CANCELLED"
        assert record["terminal"] is True
        assert record["finished_at"] is not None


async def test_cancel_of_a_terminal_job_is_409(idle_client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    job_id = (await submit_csv(idle_client, auth)).json()["id"]
    assert (await idle_client.post(f"/jobs/{job_id}/cancel/", headers=auth)).status_code == 202
    again = await idle_client.post(f"/jobs/{job_id}/cancel/", headers=auth)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_terminal"


async def test_listing_is_newest_first_and_paginated(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    ids = [(await submit_csv(client, auth)).json()["id"] for _ in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/jobs/", headers=auth, params=params)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    too_many = await client.get("/jobs/", headers=auth, params={"limit": 500})
    assert too_many.status_code == 400
    assert too_many.json()["error"]["code"] == "invalid_request"
    bad = await client.get("/jobs/", headers=auth, params={"cursor": "!!"})
    assert bad.status_code == 400


@pytest.mark.parametrize(
    ("data", "files", "status", "code"),
    [
        ({"kind": "spreadsheet_import"}, None, 400, "not_multipart"),
        ({"kind": "spreadsheet_import"}, {"other": ("a.csv", CSV)}, 400, None),
        ({"kind": "spreadsheet_import"}, {"file": ("a.csv", b"")}, 400, "empty_file"),
        ({"kind": "bogus"}, {"file": ("a.csv", CSV)}, 422, "invalid_kind"),
        ({"kind": "video"}, {"file": ("a.csv", CSV)}, 422, "invalid_kind"),
        (
            {"kind": "spreadsheet_import", "options": "{not json"},
            {"file": ("a.csv", CSV)},
            422,
            "invalid_options",
        ),
        ({"kind": "spreadsheet_import", "options": '{"header_row": 0}'}, {"file": ("a.csv", CSV)}, 422, None),
        ({"kind": "spreadsheet_import", "options": '{"colour": 1}'}, {"file": ("a.csv", CSV)}, 422, None),
    ],
)
async def test_bad_submissions_get_a_clean_4xx(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    settings: Settings,
    data: dict[str, str],
    files: dict[str, Any] | None,
    status: int,
    code: str | None,
) -> None:
    before = set(settings.upload_dir.glob("*")) if settings.upload_dir.exists() else set()
    response = await client.post("/jobs/", headers=auth, data=data, files=files)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    if code:
        assert error["code"] == code
    assert error["message"]
    assert "Traceback" not in response.text and str(settings.data_dir) not in response.text
    after = set(settings.upload_dir.glob("*")) if settings.upload_dir.exists() else set()
    assert after == before  # nothing left on disk
    assert (await client.get("/jobs/", headers=auth)).json()["items"] == []


@pytest.fixture
async def small_limit_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings.model_copy(update={"max_upload_bytes": 100_000})) as client:
        yield client


async def test_upload_over_the_limit_is_413_while_streaming(
    small_limit_client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    upload = StreamedUpload("spreadsheet_import", chunk=b"a,b\n" * 16384, chunks=1000)  # 64 MB in all
    response = await upload.post(small_limit_client, auth)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert "97 KB" in response.json()["error"]["message"]
    assert upload.sent < 1_000_000  # it stopped reading early
    declared = await small_limit_client.post(
        "/jobs/",
        headers={**auth, "content-length": "999999999", "content-type": "multipart/form-data; boundary=x"},
        content=b"",
    )
    assert declared.status_code == 413


async def test_openapi_documents_the_routes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in (
        "/jobs/",
        "/jobs/{job_id}/",
        "/jobs/{job_id}/progress/",
        "/jobs/{job_id}/rows/",
        "/jobs/{job_id}/cancel/",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths


async def test_metrics_count_sql_by_route(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    await submit_csv(client, auth)
    await client.get("/jobs/", headers=auth)
    metrics = (await client.get("/metrics")).text
    prefix = 'jobpulse_sql_statements_total{route="/jobs/"}'
    listing = [line for line in metrics.splitlines() if line.startswith(prefix)]
    assert listing
    assert float(listing[0].split()[-1]) >= 2  # the submission's insert and the listing's select
    assert 'jobpulse_http_requests_total{method="GET",route="/jobs/",status="200"} 1.0' in metrics


async def test_a_bad_kind_is_refused_before_the_file_is_streamed(
    small_limit_client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    upload = StreamedUpload("video", chunk=b"x" * 1000, chunks=100)
    response = await upload.post(small_limit_client, auth)
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("Jobs of kind 'video' are not accepted here")
    assert upload.sent < 100_000


async def test_ids_are_case_insensitive_on_every_route(
    idle_client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    client = idle_client  # the job stays PENDING
    job_id = (await submit_csv(client, auth)).json()["id"]
    assert (await client.get(f"/jobs/{job_id.upper()}/", headers=auth)).json()["id"] == job_id
    assert (await client.get(f"/jobs/{job_id.upper()}/progress/", headers=auth)).json()["state"] == "PENDING"


async def test_database_down_is_503_not_500(settings: Settings, auth: dict[str, str], tmp_path: Any) -> None:
    broken = settings.model_copy(update={"database_url": "postgresql://nobody@127.0.0.1:1/none"})
    async with app_client(broken) as client:
        response = await client.get("/jobs/", headers=auth)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "database_unavailable"
        assert response.headers["retry-after"] == "2"
