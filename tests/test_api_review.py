"""``POST /jobs/{id}/review/``: the owner resolves a REVIEW_REQUIRED job, DB first, then Redis.

The jobs are put in REVIEW_REQUIRED directly (a DB row and a progress record, as a worker leaves them), so
these tests need no model; tests/test_ocr_jobs.py reviews a job the real worker judged.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from jobpulse.auth import mint_token
from jobpulse.client import AsyncClient
from jobpulse.db.repository import NewJob
from jobpulse.errors import Conflict
from jobpulse.progress.record import ProgressUpdate
from jobpulse.states import State
from tests.conftest import SECRET

pytestmark = pytest.mark.integration

MODEL_RESULT = {
    "text": "Invoice 2O41",
    "mean_confidence": 0.62,
    "min_confidence": 0.8,
    "lines": [],
    "words": [],
}


async def _job(app: Any, owner: str, state: State = State.REVIEW_REQUIRED) -> str:
    """A job as a worker leaves it in ``state``: the DB row, then the progress record."""
    services = app.state.services
    job_id = str(uuid.uuid4())
    new = NewJob(job_id, "ai_inference", owner, {"min_confidence": 0.8}, "scan.png", 1234, "image/png")
    services.jobs.create(new)
    update = ProgressUpdate(State.PENDING, percent=0.0)
    await services.store.write(job_id, update, owner=owner, kind="ai_inference", create=True)
    if state is not State.PENDING:
        services.jobs.start(job_id, State.RUNNING)
        services.jobs.finish(job_id, state, percent=100.0, columns={"result": MODEL_RESULT})
        running = ProgressUpdate(State.RUNNING, percent=50.0)
        await services.store.write(job_id, running, owner=owner, kind="ai_inference")
        await services.store.write(
            job_id, ProgressUpdate(state, percent=100.0, current=3, total=3), owner=owner, kind="ai_inference"
        )
    return job_id


async def test_approve_with_a_correction_keeps_the_models_text_beside_it(
    app: Any, client: httpx.AsyncClient, auth: dict[str, str], owner: str
) -> None:
    job_id = await _job(app, owner)
    reply = await client.post(
        f"/jobs/{job_id}/review/", headers=auth, json={"decision": "approve", "text": "Invoice 2041"}
    )
    assert reply.status_code == 200, reply.text
    record = reply.json()
    assert (record["id"], record["state"], record["terminal"], record["error_reason"]) == (
        job_id,
        "SUCCESS",
        True,
        None,
    )
    assert record["result"]["text"] == "Invoice 2O41"  # the model's, untouched
    review = record["result"]["review"]
    assert (review["decision"], review["text"]) == ("approve", "Invoice 2041")
    assert review["reviewed_at"].endswith("Z")
    assert (await client.get(f"/jobs/{job_id}/", headers=auth)).json() == record
    progress = (await client.get(f"/jobs/{job_id}/progress/", headers=auth)).json()
    assert (progress["state"], progress["percent"], progress["message"]) == (
        "SUCCESS",
        100,
        "Approved on review",
    )
    again = await client.post(f"/jobs/{job_id}/review/", headers=auth, json={"decision": "reject"})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "not_under_review"


async def test_reject_ends_rejected_bad_input_with_a_reason(
    app: Any, client: httpx.AsyncClient, auth: dict[str, str], owner: str
) -> None:
    job_id = await _job(app, owner)
    reply = await client.post(f"/jobs/{job_id}/review/", headers=auth, json={"decision": "reject"})
    assert reply.status_code == 200
    record = reply.json()
    assert record["state"] == "REJECTED_BAD_INPUT"
    assert record["error_reason"] == "The owner rejected the recognized text on review."
    assert record["result"]["review"] == {**record["result"]["review"], "decision": "reject", "text": None}
    progress = (await client.get(f"/jobs/{job_id}/progress/", headers=auth)).json()
    assert (progress["state"], progress["error_reason"]) == ("REJECTED_BAD_INPUT", record["error_reason"])


async def test_only_the_owner_may_review_and_only_under_review(
    app: Any, client: httpx.AsyncClient, auth: dict[str, str], owner: str
) -> None:
    job_id = await _job(app, owner)
    stranger = {"Authorization": f"Bearer {mint_token(SECRET, 'someone-else', 3600)}"}
    body = {"decision": "approve"}
    assert (await client.post(f"/jobs/{job_id}/review/", headers=stranger, json=body)).status_code == 404
    assert (await client.post(f"/jobs/{uuid.uuid4()}/review/", headers=auth, json=body)).status_code == 404
    assert (await client.post("/jobs/not-an-id/review/", headers=auth, json=body)).status_code == 404
    assert (await client.post(f"/jobs/{job_id}/review/", json=body)).status_code == 401
    pending = await _job(app, owner, State.PENDING)
    reply = await client.post(f"/jobs/{pending}/review/", headers=auth, json=body)
    assert reply.status_code == 409
    assert "REVIEW_REQUIRED" in reply.json()["error"]["message"]
    # The stranger's attempt changed nothing.
    assert (await client.get(f"/jobs/{job_id}/", headers=auth)).json()["state"] == "REVIEW_REQUIRED"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"approve", 400),
        (b"", 400),
        (b'{"decision": "maybe"}', 422),
        (b'{"decision": "approve", "note": "x"}', 422),
        (b'{"text": "only a text"}', 422),
        (b'{"decision": "approve", "text": 5}', 422),
        (b"[]", 422),
    ],
)
async def test_a_malformed_review_is_refused(
    app: Any, client: httpx.AsyncClient, auth: dict[str, str], owner: str, body: bytes, status: int
) -> None:
    job_id = await _job(app, owner)
    headers = {**auth, "content-type": "application/json"}
    reply = await client.post(f"/jobs/{job_id}/review/", headers=headers, content=body)
    assert reply.status_code == status, reply.text
    assert set(reply.json()["error"]) == {"code", "message"}
    assert (await client.get(f"/jobs/{job_id}/", headers=auth)).json()["state"] == "REVIEW_REQUIRED"


async def test_the_python_client_reviews(app: Any, token: str, owner: str) -> None:
    first, second = await _job(app, owner), await _job(app, owner)
    transport = httpx.ASGITransport(app=app)
    async with AsyncClient("http://test", token=token, transport=transport) as client:
        assert (await client.review(first, "approve", text="fixed"))["state"] == "SUCCESS"
        assert (await client.review(second, "reject"))["state"] == "REJECTED_BAD_INPUT"
        with pytest.raises(Conflict):
            await client.review(first, "approve")
        with pytest.raises(ValueError, match="approve"):
            await client.review(first, "yes")
    await app.state.services.aclose()
