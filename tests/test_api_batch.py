"""``POST /progress/batch/``: many records in one call, per-id UNKNOWN, limits, and zero SQL."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from jobpulse.auth import mint_token
from jobpulse.progress.record import ProgressUpdate
from jobpulse.states import State
from tests.conftest import SECRET
from tests.jobs import submit_csv

pytestmark = pytest.mark.integration


async def test_known_foreign_and_unknown_ids_in_one_call_run_zero_sql(
    idle_client: httpx.AsyncClient, auth: dict[str, str], idle_app: Any, owner: str
) -> None:
    client, app = idle_client, idle_app  # no worker moves the records while they are read
    mine = [(await submit_csv(client, auth)).json()["id"] for _ in range(3)]
    stranger = {"Authorization": f"Bearer {mint_token(SECRET, 'mallory', 60)}"}
    foreign = (await submit_csv(client, stranger)).json()["id"]
    missing = str(uuid.uuid4())
    await app.state.services.store.write(
        mine[0], ProgressUpdate(State.RUNNING, percent=40.0), owner=owner, kind="spreadsheet_import"
    )
    counter = app.state.services.statements
    before = counter.total
    response = await client.post(
        "/progress/batch/", headers=auth, json={"ids": [*mine, foreign, missing, "not-an-id", mine[1]]}
    )
    assert counter.total == before
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "private, no-cache"
    items = response.json()["items"]
    assert set(items) == {*mine, foreign, missing, "not-an-id"}  # the duplicate is answered once
    assert items[mine[0]]["state"] == "RUNNING" and items[mine[0]]["percent"] == 40.0
    assert items[mine[0]]["version"] == 2 and items[mine[0]]["poll_after_ms"] > 0
    for job_id in mine[1:]:
        assert items[job_id]["state"] == "PENDING" and items[job_id]["kind"] == "spreadsheet_import"
    for job_id in (foreign, missing, "not-an-id"):
        assert items[job_id]["state"] == "UNKNOWN"
        assert items[job_id]["kind"] is None and items[job_id]["version"] == 0
    # A batch item is the same body the single progress endpoint answers.
    single = (await client.get(f"/jobs/{mine[1]}/progress/", headers=auth)).json()
    assert {k: v for k, v in single.items() if k != "poll_after_ms"} == {
        k: v for k, v in items[mine[1]].items() if k != "poll_after_ms"
    }


async def test_ids_are_answered_as_sent(idle_client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    client = idle_client  # the job stays PENDING
    job_id = (await submit_csv(client, auth)).json()["id"]
    items = (await client.post("/progress/batch/", headers=auth, json={"ids": [job_id.upper()]})).json()[
        "items"
    ]
    assert items[job_id.upper()]["state"] == "PENDING"
    assert items[job_id.upper()]["id"] == job_id


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"ids": []}, 422),
        ({"ids": [str(uuid.uuid4()) for _ in range(501)]}, 422),
        ({"ids": [1, 2]}, 422),
        ({"ids": "abc"}, 422),
        ({}, 422),
    ],
)
async def test_limits_and_bad_bodies(
    client: httpx.AsyncClient, auth: dict[str, str], app: Any, body: dict[str, Any], status: int
) -> None:
    counter = app.state.services.statements
    before = counter.total
    response = await client.post("/progress/batch/", headers=auth, json=body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == "invalid_options"
    assert counter.total == before


async def test_500_ids_is_one_call(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    ids = [str(uuid.uuid4()) for _ in range(500)]
    response = await client.post("/progress/batch/", headers=auth, json={"ids": ids})
    assert response.status_code == 200
    assert len(response.json()["items"]) == 500


async def test_malformed_json_and_missing_token(
    client: httpx.AsyncClient, auth: dict[str, str], app: Any
) -> None:
    counter = app.state.services.statements
    before = counter.total
    broken = await client.post(
        "/progress/batch/", headers={**auth, "content-type": "application/json"}, content=b"{nope"
    )
    assert broken.status_code == 400
    assert broken.json()["error"]["code"] == "invalid_request"
    anonymous = await client.post("/progress/batch/", json={"ids": [str(uuid.uuid4())]})
    assert anonymous.status_code == 401
    assert counter.total == before
