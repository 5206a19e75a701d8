"""The Redis-only progress endpoint: the body, ETag/304, UNKNOWN, ownership, and zero SQL."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from jobpulse.auth import mint_token
from jobpulse.client import AsyncClient
from jobpulse.progress.record import ProgressUpdate, encode_details
from jobpulse.states import State
from tests.conftest import SECRET
from tests.jobs import CSV, submit_csv

pytestmark = pytest.mark.integration


async def test_submission_answers_pending_with_links(
    idle_client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    client = idle_client  # no worker takes the job: it stays PENDING at version 1
    response = await submit_csv(client, auth)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["state"] == "PENDING"
    assert body["terminal"] is False
    assert body["kind"] == "spreadsheet_import"
    assert body["version"] == 1
    uuid.UUID(body["id"], version=4)
    assert body["links"]["progress"].endswith(f"/jobs/{body['id']}/progress/")
    progress = await client.get(f"/jobs/{body['id']}/progress/", headers=auth)
    assert progress.status_code == 200
    assert progress.json()["state"] == "PENDING"  # a new job is never UNKNOWN
    assert progress.headers["cache-control"] == "private, no-cache"
    assert progress.headers["etag"] == '"1"'


async def test_etag_and_304(
    idle_client: httpx.AsyncClient, auth: dict[str, str], idle_app: Any, owner: str
) -> None:
    client, app = idle_client, idle_app  # no worker moves the record between the reads
    job_id = (await submit_csv(client, auth)).json()["id"]
    first = await client.get(f"/jobs/{job_id}/progress/", headers=auth)
    etag = first.headers["etag"]
    same = await client.get(f"/jobs/{job_id}/progress/", headers={**auth, "If-None-Match": etag})
    assert same.status_code == 304
    assert same.content == b""
    assert same.headers["etag"] == etag
    store = app.state.services.store
    await store.write(
        job_id, ProgressUpdate(State.RUNNING, percent=12.5), owner=owner, kind="spreadsheet_import"
    )
    moved = await client.get(f"/jobs/{job_id}/progress/", headers={**auth, "If-None-Match": etag})
    assert moved.status_code == 200
    assert moved.json()["percent"] == 12.5
    assert moved.json()["poll_after_ms"] == app.state.services.policy.active_ms
    assert moved.headers["etag"] != etag


async def test_unknown_for_missing_foreign_and_malformed_ids(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    job_id = (await submit_csv(client, auth)).json()["id"]
    stranger = {"Authorization": f"Bearer {mint_token(SECRET, 'mallory', 60)}"}
    for path, headers in [
        (f"/jobs/{uuid.uuid4()}/progress/", auth),
        (f"/jobs/{job_id}/progress/", stranger),
        ("/jobs/not-a-uuid/progress/", auth),
        (f"/media/videos/{job_id}/progress/", auth),  # a job id on the video route
    ]:
        response = await client.get(path, headers=headers)
        assert response.status_code == 200, path
        body = response.json()
        assert body["state"] == "UNKNOWN"
        assert body["kind"] is None and body["version"] == 0 and body["terminal"] is False
        assert body["poll_after_ms"] > 0
        assert "etag" not in response.headers


async def test_progress_runs_zero_sql(
    idle_client: httpx.AsyncClient, auth: dict[str, str], idle_app: Any, owner: str
) -> None:
    # On a Redis no worker watches: the job stays at version 1, which the If-None-Match case relies on.
    client = idle_client
    job_id = (await submit_csv(client, auth)).json()["id"]
    counter = idle_app.state.services.statements
    before = counter.total
    stranger = {"Authorization": f"Bearer {mint_token(SECRET, 'mallory', 60)}"}
    expired = {"Authorization": f"Bearer {mint_token(SECRET, owner, 60, now=1_000_000)}"}
    forged = {"Authorization": f"Bearer {mint_token('wrong-secret-wrong-secret-wrong-secret', owner, 60)}"}
    cases: list[tuple[str, dict[str, str]]] = [
        (f"/jobs/{job_id}/progress/", auth),
        (f"/jobs/{job_id}/progress", auth),
        (f"/jobs/{job_id}/progress/", {**auth, "If-None-Match": '"1"'}),
        (f"/jobs/{uuid.uuid4()}/progress/", auth),
        (f"/jobs/{job_id}/progress/", stranger),
        ("/jobs/%20drop%20table/progress/", auth),
        (f"/jobs/{job_id}/progress/", {}),
        (f"/jobs/{job_id}/progress/", expired),
        (f"/jobs/{job_id}/progress/", forged),
        (f"/jobs/{job_id}/progress/", {"Authorization": "Basic abc"}),
        (f"/media/videos/{job_id}/progress/", auth),
    ]
    statuses = []
    for _ in range(20):
        for path, headers in cases:
            statuses.append((await client.get(path, headers=headers)).status_code)
    assert counter.total == before
    assert set(statuses) == {200, 304, 401}
    metrics = (await client.get("/metrics")).text
    assert 'jobpulse_sql_statements_total{route="/jobs/{job_id}/progress/"}' not in metrics
    assert 'route="/jobs/{job_id}/progress/",status="200"' in metrics


async def test_db_record_matches_and_other_owner_gets_404(
    idle_client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    job_id = (await submit_csv(idle_client, auth)).json()["id"]  # no worker takes it: it stays PENDING
    record = (await idle_client.get(f"/jobs/{job_id}/", headers=auth)).json()
    assert record["state"] == "PENDING"
    assert record["input"] == {
        "filename": "people.csv",
        "size_bytes": len(CSV),
        "content_type": "text/csv",
        "data": None,
    }
    stranger = {"Authorization": f"Bearer {mint_token(SECRET, 'mallory', 60)}"}
    response = await idle_client.get(f"/jobs/{job_id}/", headers=stranger)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert (await idle_client.get("/jobs/nope/", headers=auth)).status_code == 404


async def test_the_documented_fastapi_route_answers_like_the_layer(
    idle_client: httpx.AsyncClient, auth: dict[str, str], idle_app: Any
) -> None:
    client, app = idle_client, idle_app  # no worker moves the record between the two reads
    job_id = (await submit_csv(client, auth)).json()["id"]
    inner = httpx.AsyncClient(transport=httpx.ASGITransport(app=app.app), base_url="http://test")
    async with inner:
        for headers in (auth, {**auth, "If-None-Match": '"1"'}, {}):
            via_layer = await client.get(f"/jobs/{job_id}/progress/", headers=headers)
            via_route = await inner.get(f"/jobs/{job_id}/progress/", headers=headers)
            assert via_route.status_code == via_layer.status_code
            assert via_route.headers.get("etag") == via_layer.headers.get("etag")
            if via_layer.content:
                body_layer, body_route = via_layer.json(), via_route.json()
                body_layer.pop("poll_after_ms", None)
                body_route.pop("poll_after_ms", None)
                assert body_route == body_layer


async def test_head_and_odd_headers_never_500(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    job_id = (await submit_csv(client, auth)).json()["id"]
    head = await client.head(f"/jobs/{job_id}/progress/", headers=auth)
    assert head.status_code == 200
    assert head.content == b""
    for if_none_match in ("*", 'W/"1"', '"9", "1"', "garbage", ""):
        response = await client.get(
            f"/jobs/{job_id}/progress/", headers={**auth, "If-None-Match": if_none_match}
        )
        assert response.status_code in (200, 304), if_none_match
    for authorization in (b"Bearer", b"Bearer  ", b"bearer x.y.z", "Bearer \u00e9".encode("latin-1")):
        response = await client.get(f"/jobs/{job_id}/progress/", headers={b"Authorization": authorization})
        assert response.status_code == 401
    response = await client.get("/jobs/" + "a" * 5000 + "/progress/", headers=auth)
    assert response.json()["state"] == "UNKNOWN"


async def test_details_reach_the_poll_the_batch_and_the_sdk(
    idle_client: httpx.AsyncClient, auth: dict[str, str], idle_app: Any, owner: str, token: str
) -> None:
    client = idle_client  # no worker moves the record: what the test writes is what a poll reads
    job_id = (await submit_csv(client, auth)).json()["id"]
    progress = f"/jobs/{job_id}/progress/"
    assert (await client.get(progress, headers=auth)).json()["details"] is None  # never set
    details = {"file": "people.csv", "by_category": {"valid": 2, "invalid": 1}, "names": ["é" * 40] * 10}
    await idle_app.state.services.store.write(
        job_id,
        ProgressUpdate(State.RUNNING, percent=30, details=encode_details(details, 2048)),
        owner=owner,
        kind="spreadsheet_import",
    )
    body = (await client.get(progress, headers=auth)).json()
    assert body["details"] == details
    assert list(body)[list(body).index("error_reason") + 1] == "details"
    missing = str(uuid.uuid4())
    batch = (await client.post("/progress/batch/", json={"ids": [job_id, missing]}, headers=auth)).json()
    assert batch["items"][job_id]["details"] == details
    assert batch["items"][missing]["details"] is None  # UNKNOWN carries null
    assert (await client.get(f"/jobs/{missing}/progress/", headers=auth)).json()["details"] is None
    transport = httpx.ASGITransport(app=idle_app)
    async with AsyncClient("http://test", token=token, transport=transport) as sdk:
        assert (await sdk.progress(job_id)).details == details
        assert (await sdk.progress_many([missing]))[missing].details is None
