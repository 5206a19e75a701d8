"""``jobpulse submit | watch | status`` against the real API and worker: output and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from jobpulse.client.cli import EXIT_CODES
from jobpulse.states import State
from tests.conftest import SECRET
from tests.jobs import CSV
from tests.services import ApiServer, service_env

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]


def jobpulse(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobpulse", *args],
        env=service_env(env or {}),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def connection(api_server: ApiServer, token: str) -> dict[str, str]:
    return {"JOBPULSE_URL": api_server.url, "JOBPULSE_TOKEN": token}


def test_submit_watch_prints_progress_and_exits_by_state(tmp_path: Path, connection: dict[str, str]) -> None:
    good = tmp_path / "people.csv"
    good.write_bytes(CSV)
    done = jobpulse("submit", str(good), "--watch", env=connection)
    assert done.returncode == 0, done.stderr
    job_id, final = done.stdout.splitlines()[0], done.stdout.splitlines()[-1]
    uuid.UUID(job_id, version=4)
    assert final.startswith("SUCCESS") and "100.0%" in final
    assert "SUCCESS" in done.stderr  # the live display (a line per change when not on a terminal)

    bad = tmp_path / "broken.xlsx"
    bad.write_bytes(b"this is not a workbook")
    rejected = jobpulse("submit", str(bad), "--watch", env=connection)
    assert rejected.returncode == EXIT_CODES[State.REJECTED_BAD_INPUT] == 3
    assert "REJECTED_BAD_INPUT" in rejected.stdout
    assert str(tmp_path) not in rejected.stdout + rejected.stderr


def test_watch_and_status_of_an_id_as_json(tmp_path: Path, connection: dict[str, str]) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(CSV)
    submitted = jobpulse("submit", str(path), "--json", "--options", '{"header_row": 1}', env=connection)
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["id"]
    watched = jobpulse("watch", job_id, "--json", env=connection)
    assert watched.returncode == 0, watched.stderr
    records = [json.loads(line) for line in watched.stdout.splitlines()]
    assert records[-1]["state"] == "SUCCESS" and records[-1]["id"] == job_id
    status = jobpulse("status", job_id, "--json", env=connection)
    assert status.returncode == 0, status.stderr
    body = json.loads(status.stdout)
    assert body["progress"]["state"] == "SUCCESS" and body["record"]["result"] is not None
    human = jobpulse("status", job_id, env=connection)
    assert human.returncode == 0 and "SUCCESS" in human.stdout and "people.csv" in human.stdout


def test_errors_have_their_exit_codes(
    tmp_path: Path, connection: dict[str, str], api_server: ApiServer
) -> None:
    missing = jobpulse("watch", str(uuid.uuid4()), env=connection)
    assert missing.returncode == 6 and "error:" in missing.stderr
    forged = jobpulse("status", str(uuid.uuid4()), env={**connection, "JOBPULSE_TOKEN": "forged"})
    assert forged.returncode == 7
    nowhere = jobpulse("status", str(uuid.uuid4()), env={**connection, "JOBPULSE_URL": "http://127.0.0.1:9"})
    assert (
        nowhere.returncode == 9 and "Could not reach" in nowhere.stderr and "Traceback" not in nowhere.stderr
    )
    odd = tmp_path / "notes.bin"
    odd.write_bytes(b"x")
    unknown_kind = jobpulse("submit", str(odd), env=connection)
    assert unknown_kind.returncode == 2 and "--kind" in unknown_kind.stderr
    bad_options = jobpulse(
        "submit", str(odd), "--kind", "spreadsheet_import", "--options", "[1]", env=connection
    )
    assert bad_options.returncode == 2 and "JSON object" in bad_options.stderr
    invalid = jobpulse(
        "submit", str(odd), "--kind", "spreadsheet_import", "--options", '{"nope": 1}', env=connection
    )
    assert invalid.returncode == 9 and "not a known option" in invalid.stderr


def test_without_a_token_it_mints_one_from_the_local_secret(tmp_path: Path, api_server: ApiServer) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(CSV)
    env = {"JOBPULSE_URL": api_server.url, "JOBPULSE_SECRET_KEY": SECRET}
    done = jobpulse("submit", str(path), "--watch", "--timeout", "60", env=env)
    assert done.returncode == 0, done.stderr
    no_secret = jobpulse(
        "status", str(uuid.uuid4()), env={"JOBPULSE_URL": api_server.url, "JOBPULSE_DATA_DIR": str(tmp_path)}
    )
    assert no_secret.returncode == 2 and "no token" in no_secret.stderr
