"""The ``jobpulse`` command: ``up`` runs the whole system on embedded defaults and stops cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import jwt
import psutil
import pytest

from jobpulse.auth import mint_token
from jobpulse.embedded import free_port
from tests.conftest import SECRET
from tests.jobs import poll_until_terminal, submit_file
from tests.services import ApiServer, service_env

pytestmark = pytest.mark.integration


def test_up_runs_everything_and_stops_without_orphans(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    up = subprocess.Popen(
        [sys.executable, "-m", "jobpulse", "up", "--port", str(port), "--data-dir", str(data_dir)],
        env=service_env({}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        token = None
        lines: list[str] = []
        deadline = time.monotonic() + 90
        assert up.stdout is not None
        while token is None:
            assert time.monotonic() < deadline, "".join(lines)
            line = up.stdout.readline()
            assert line or up.poll() is None, "".join(lines)
            lines.append(line)
            if line.startswith("token for user 'local': "):
                token = line.split(": ", 1)[1].strip()
        assert (data_dir / "secret_key").is_file()
        assert (
            jwt.decode(token, (data_dir / "secret_key").read_text(), algorithms=["HS256"])["sub"] == "local"
        )
        family = psutil.Process(up.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in family)
        assert "redis-server" in names and " serve " in names and " worker" in names

        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            job_id = submit_file(http, auth, b"a,b\n1,2\n3,4\n", "t.csv").json()["id"]
            assert poll_until_terminal(http, auth, job_id)[-1]["state"] == "SUCCESS"
            assert http.get(f"/jobs/{job_id}/rows/", headers=auth).json()["items"][1]["data"] == {
                "a": "3",
                "b": "4",
            }

        # `jobpulse token create` signs with the same generated secret.
        minted = subprocess.run(
            [sys.executable, "-m", "jobpulse", "token", "create", "someone", "--data-dir", str(data_dir)],
            env=service_env({}),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert (
            jwt.decode(minted, (data_dir / "secret_key").read_text(), algorithms=["HS256"])["sub"]
            == "someone"
        )

        up.send_signal(signal.SIGTERM)
        assert up.wait(60) == 0
        _, alive = psutil.wait_procs(family, timeout=10)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(10)
        if up.stdout is not None:
            up.stdout.close()


def test_serve_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jobpulse", "serve", "--data-dir", str(tmp_path)],
        env=service_env({"REDIS_URL": "redis://127.0.0.1:1/0"}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "JOBPULSE_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_creates_the_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "jobpulse", "migrate"],
        env=service_env({"DATABASE_URL": url}),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "up to date" in result.stdout
    import sqlite3

    with sqlite3.connect(tmp_path / "m.db") as db:
        tables = {row[0] for row in db.execute("select name from sqlite_master where type='table'")}
    assert {"jobs", "import_rows", "alembic_version"} <= tables
    assert (tmp_path / "m.db").stat().st_size > 0


def test_serve_with_uvicorn_through_the_factory(base_env: dict[str, str], tmp_path: Path) -> None:
    server = ApiServer(base_env, tmp_path / "uvicorn.log", server="uvicorn")
    server.start()
    try:
        token = mint_token(SECRET, "u", 60)
        response = httpx.get(
            f"{server.url}/jobs/{uuid.uuid4()}/progress/", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200
        assert response.json()["state"] == "UNKNOWN"
        assert httpx.get(f"{server.url}/readyz").json()["checks"] == {"redis": "ok", "database": "ok"}
    finally:
        server.stop()
