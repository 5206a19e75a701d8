"""Redis stopped mid-test: progress answers 503 with Retry-After and the error body, never 500, never the
database; submission answers 503 and leaves no job behind; everything recovers when Redis is back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from jobpulse.api.app import create_app
from jobpulse.settings import Settings
from tests.jobs import submit_csv
from tests.services import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture
async def outage_client(
    settings: Settings, own_redis: RedisServer
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = create_app(settings.model_copy(update={"redis_url": own_redis.url, "redis_timeout_seconds": 0.5}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client, app
    await app.state.services.aclose()


async def test_progress_503_while_redis_is_down_then_recovers(
    outage_client: tuple[httpx.AsyncClient, Any], own_redis: RedisServer, auth: dict[str, str], owner: str
) -> None:
    client, app = outage_client
    submitted = await submit_csv(client, auth)
    assert submitted.status_code == 202
    job_id = submitted.json()["id"]
    counter = app.state.services.statements
    own_redis.stop()
    before = counter.total
    for _ in range(3):
        response = await client.get(f"/jobs/{job_id}/progress/", headers=auth)
        assert response.status_code == 503
        assert response.headers["retry-after"].isdigit()
        assert response.json()["error"]["code"] == "service_unavailable"
    assert counter.total == before  # no fallback to the database

    rejected = await submit_csv(client, auth)
    assert rejected.status_code == 503
    assert rejected.json()["error"]["code"] in {"service_unavailable", "broker_unavailable"}
    listing = (await client.get("/jobs/", headers=auth)).json()
    assert [item["id"] for item in listing["items"]] == [job_id]  # the failed submission left no job

    ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"] == "unreachable"

    own_redis.start()  # an empty Redis: the record is gone, so the job reads UNKNOWN, not an error
    response = await client.get(f"/jobs/{job_id}/progress/", headers=auth)
    assert response.status_code == 200
    assert response.json()["state"] == "UNKNOWN"
    again = await submit_csv(client, auth)
    assert again.status_code == 202
    assert (await client.get(f"/jobs/{again.json()['id']}/progress/", headers=auth)).json()[
        "state"
    ] == "PENDING"
