"""A worker process killed mid-job: the message is redelivered (late acks, reject_on_worker_lost), the
dead worker's lease runs out, and the job runs again from the start to exactly one result.

The worker has a Redis and a database of its own: a worker's reaper takes every running job whose lease
is not in its Redis for one whose worker died, so two Redis servers must never share one database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from jobpulse.api.app import create_app
from jobpulse.db.engine import create_db_engine
from jobpulse.db.repository import JobRepository
from jobpulse.settings import Settings
from tests.conftest import settings_from
from tests.jobs import apoll_until, submit_csv
from tests.services import RedisServer, Worker
from tests.test_reaper import fresh_database

pytestmark = pytest.mark.integration

ROWS = 300_000


@pytest.fixture
def own_worker(base_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[Worker, Settings]]:
    redis_server = RedisServer(tmp_path / "redis")
    redis_server.start()
    database_url = fresh_database(tmp_path)
    env = {
        **base_env,
        "REDIS_URL": redis_server.url,
        "DATABASE_URL": database_url,
        "JOBPULSE_JOB_LOCK_SECONDS": "2",
    }
    worker = Worker(env, tmp_path / "worker.log", concurrency=1)
    worker.start()
    yield worker, settings_from(env)
    worker.stop()
    redis_server.stop()


@pytest.mark.timeout(120)
async def test_a_killed_worker_child_is_redelivered_and_finishes_once(
    own_worker: tuple[Worker, Settings], auth: dict[str, str]
) -> None:
    worker, settings = own_worker
    assert worker.process is not None
    app = create_app(settings)
    content = b"id,name\n" + b"".join(b"%d,person %d\n" % (n, n) for n in range(ROWS))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        job_id = (await submit_csv(client, auth, content, "big.csv")).json()["id"]
        deadline = time.monotonic() + 60
        while True:
            body = (await client.get(f"/jobs/{job_id}/progress/", headers=auth)).json()
            if body["state"] == "RUNNING" and (body["percent"] or 0) > 10:
                break
            assert time.monotonic() < deadline, body
        children = psutil.Process(worker.process.pid).children()
        assert children
        for child in children:
            child.kill()
        final = await apoll_until(client, auth, job_id, {"SUCCESS", "FAILED"}, timeout=90)
        assert final["state"] == "SUCCESS", worker.log.read_text()[-2000:]
        record = (await client.get(f"/jobs/{job_id}/", headers=auth)).json()
        assert record["result"]["rows_imported"] == ROWS
    await app.state.services.aclose()
    engine = create_db_engine(settings.resolved_database_url)
    jobs = JobRepository(engine)
    job = jobs.get(job_id)
    assert job is not None
    assert job.attempts == 2
    assert len(jobs.rows(job_id, after=0, limit=ROWS + 10)) == ROWS
    engine.dispose()
