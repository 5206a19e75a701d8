"""The browser client (clients/js) against the real API server and worker, run by Node.js.

Its own logic is tested by ``npm test`` in clients/js against a scripted server; this is the end to end
check that it speaks the real API.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobpulse.auth import mint_token
from tests.conftest import SECRET
from tests.jobs import CSV
from tests.services import ApiServer

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]

WATCH = Path(__file__).resolve().parent.parent / "clients" / "js" / "scripts" / "watch.mjs"


def node(*args: str) -> tuple[int, list[dict[str, Any]]]:
    executable = shutil.which("node")
    assert executable, "Node.js is not installed (scripts/bootstrap.sh --test installs it)"
    done = subprocess.run([executable, str(WATCH), *args], capture_output=True, text=True, timeout=120)
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def submit(http: httpx.Client, auth: dict[str, str]) -> str:
    response = http.post(
        "/jobs/", headers=auth, data={"kind": "spreadsheet_import"}, files={"file": ("people.csv", CSV)}
    )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def test_poll_excel_job_follows_a_real_job_to_success(
    http: httpx.Client, auth: dict[str, str], token: str, api_server: ApiServer
) -> None:
    job_id = submit(http, auth)
    code, events = node("--base-url", api_server.url, "--token", token, "--job", job_id)
    assert code == 0, events
    progress = [event["record"] for event in events if event["event"] == "progress"]
    assert progress[-1]["state"] == "SUCCESS" and progress[-1]["percent"] == 100
    assert events[-1]["event"] == "done" and events[-1]["record"]["state"] == "SUCCESS"
    versions = [record["version"] for record in progress]
    assert versions == sorted(set(versions))


def test_unknown_ids_end_not_found_and_bad_tokens_end_with_an_auth_error(
    token: str, api_server: ApiServer
) -> None:
    code, events = node(
        "--base-url", api_server.url, "--token", token, "--job", str(uuid.uuid4()), "--unknown-checks", "2"
    )
    assert code == 1 and events[-1]["event"] == "error" and events[-1]["name"] == "NotFoundError"
    assert [e["record"]["state"] for e in events if e["event"] == "progress"] == ["UNKNOWN"]
    code, events = node("--base-url", api_server.url, "--token", "forged", "--job", str(uuid.uuid4()))
    assert code == 1 and events[-1]["name"] == "AuthError"


def test_the_batch_poller_follows_several_real_jobs(
    http: httpx.Client, auth: dict[str, str], token: str, api_server: ApiServer
) -> None:
    ids = [submit(http, auth) for _ in range(3)]
    stranger = {"Authorization": f"Bearer {mint_token(SECRET, 'mallory', 60)}"}
    foreign = submit(http, stranger)
    code, events = node("--base-url", api_server.url, "--token", token, "--batch", ",".join(ids))
    assert code == 0, events
    assert events[-1]["event"] == "done"
    assert {job_id: record["state"] for job_id, record in events[-1]["records"].items()} == dict.fromkeys(
        ids, "SUCCESS"
    )
    assert foreign not in {event.get("id") for event in events}
