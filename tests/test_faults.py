"""Faults, with real processes: a worker's pool child or the whole worker SIGKILLed mid-job, a job that
kills its worker every time it starts, Redis stopped for 30 s mid-run, PostgreSQL restarted mid-run.

Each test has its own Redis, worker and database (on the session's database server; the PostgreSQL
restart has a PostgreSQL cluster of its own, so it runs on both passes of the suite). Each asserts what a
user must be able to count on: the job ends exactly once (one terminal progress write, the last one; its
rows imported once; one run of the task recording a result) or ends FAILED after the attempts limit with
a user-safe reason; nothing stays RUNNING, PENDING or UNKNOWN.

The lease is 2 s and the reaper looks every 0.5 s, so a dead worker's job is found within seconds. The
visibility timeout keeps its default (hours): Celery itself never redelivers a dead worker's message
within a test, so what brings such a job back here is the reaper.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import pytest
import redis
from sqlalchemy import text
from sqlalchemy.engine import make_url

from jobpulse.db.engine import create_db_engine
from jobpulse.db.migrate import upgrade
from jobpulse.db.repository import JobRepository
from jobpulse.settings import Settings
from tests.conftest import app_client
from tests.jobs import submit_csv, wait_for
from tests.services import PostgresServer, RedisServer, Worker

pytestmark = pytest.mark.integration

FAULT_ENV = {"JOBPULSE_JOB_LOCK_SECONDS": "2", "JOBPULSE_REAPER_INTERVAL_SECONDS": "0.5"}
MAX_ATTEMPTS: int = Settings.model_fields["job_max_attempts"].default
OUTAGE_SECONDS = 30.0  # the Redis outage


def csv_of(rows: int) -> bytes:
    return b"id,name\n" + b"".join(b"%d,person %d\n" % (n, n) for n in range(rows))


class EventLog:
    """Every accepted progress write of every job, as Redis publishes it (``ev:{id}``), in order."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        self.pubsub.psubscribe("jp:ev:*")
        self.records: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="event-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                message = self.pubsub.get_message(timeout=0.1)
            except redis.RedisError:
                return  # Redis went away: the tests that stop it do not use this log
            if message is not None:
                job_id = message["channel"].decode().rsplit(":", 1)[1]
                self.records[job_id].append(orjson.loads(message["data"]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.pubsub.close()
        self.client.close()

    def assert_one_result(self, job_id: str, state: str) -> None:
        """One terminal write, ``state``, and it is the last; versions only go up."""
        wait_for(lambda: any(r["state"] == state for r in self.records[job_id]), "the terminal event", 5)
        records = list(self.records[job_id])
        versions = [int(r["version"]) for r in records]
        assert versions == sorted(set(versions)), versions
        terminal = [r["state"] for r in records if r["state"] not in ACTIVE]
        assert terminal == [state], [r["state"] for r in records]
        assert records[-1]["state"] == state


ACTIVE = {"PENDING", "RUNNING", "PROCESSING", "FALLBACK_TO_GPU"}


@dataclass
class Stack:
    """A test's own Redis and worker, the API's settings on that Redis, and the jobs table."""

    redis: RedisServer
    worker: Worker
    settings: Settings
    jobs: JobRepository

    def rows(self, job_id: str) -> tuple[int, int]:
        """How many rows the job has in ``import_rows``, and how many distinct row numbers."""
        with self.jobs.engine.connect() as connection:
            query = "SELECT count(*), count(DISTINCT row_number) FROM import_rows WHERE job_id = :id"
            total, distinct = connection.execute(text(query), {"id": job_id}).one()
        return int(total), int(distinct)

    def results_logged(self) -> int:
        """Runs of a task that recorded a terminal state (the task returns it; Celery logs it)."""
        log = self.worker.log.read_text()
        return len(re.findall(r"succeeded in [0-9.e-]+s: '(?!None)[A-Z_]+'", log))

    def pool_children(self) -> list[psutil.Process]:
        assert self.worker.process is not None
        return psutil.Process(self.worker.process.pid).children()

    def kill_pool_children(self) -> int:
        children = self.pool_children()
        for child in children:
            child.kill()
        return len(children)

    def queues_empty(self) -> bool:
        """No message waits in Redis: none queued on ``imports``, none delivered and unacknowledged."""
        client = redis.Redis.from_url(self.redis.url)
        try:
            return not client.llen("imports") and not client.hlen("unacked")
        finally:
            client.close()

    def epoch_marked(self) -> bool:
        client = redis.Redis.from_url(self.redis.url)
        try:
            return bool(client.exists("jp:epoch"))
        finally:
            client.close()

    @asynccontextmanager
    async def client(self) -> AsyncIterator[httpx.AsyncClient]:
        async with app_client(self.settings) as client:
            yield client


@pytest.fixture
def own_database(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A database of the test's own, on the session's server (SQLite: a file; PostgreSQL: a database).

    The reaper re-queues every PENDING job it finds when it meets a Redis without its epoch marker, as a
    new test Redis is: on the session's database it would run other tests' leftover jobs.
    """
    if not database_url.startswith("postgres"):
        url = f"sqlite:///{tmp_path / 'faults.db'}"
        engine = create_db_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
        return
    name = f"faults_{uuid.uuid4().hex[:12]}"
    admin = create_db_engine(database_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    url = make_url(database_url).set(database=name).render_as_string(hide_password=False)
    engine = create_db_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.engine.dispose()


@pytest.fixture
def make_stack(
    base_env: dict[str, str], settings: Settings, own_database: str, tmp_path: Path
) -> Iterator[Callable[..., Stack]]:
    """Start a stack whose worker has ``FAULT_ENV`` plus the given ``JOBPULSE_*`` settings."""
    started: list[Stack] = []

    def make(concurrency: int = 1, database_url: str | None = None, **overrides: str) -> Stack:
        database = database_url or own_database
        redis_server = RedisServer(tmp_path / "redis")
        redis_server.start()
        data_dir = tmp_path / "data"
        env = {
            **base_env,
            **FAULT_ENV,
            "REDIS_URL": redis_server.url,
            "DATABASE_URL": database,
            "JOBPULSE_DATA_DIR": str(data_dir),
        }
        env.update({f"JOBPULSE_{name.upper()}": value for name, value in overrides.items()})
        worker = Worker(env, tmp_path / "worker.log", concurrency=concurrency)
        api_settings = settings.model_copy(
            update={
                "redis_url": redis_server.url,
                "database_url": database,
                "data_dir": data_dir,
                "redis_timeout_seconds": 0.5,
            }
        )
        stack = Stack(redis_server, worker, api_settings, JobRepository(create_db_engine(database)))
        started.append(stack)
        worker.start()
        # The reaper's first pass marks the new Redis (its epoch): jobs submitted after it are not
        # re-queued as if Redis had lost their messages (harmless duplicates, but they blur the counts).
        wait_for(stack.epoch_marked, "the reaper's first pass", 15)
        return stack

    yield make
    for stack in started:
        stack.worker.stop()
        stack.redis.stop()
        stack.jobs.engine.dispose()


@pytest.fixture
def events(tmp_path: Path) -> Iterator[Callable[[Stack], EventLog]]:
    logs: list[EventLog] = []

    def watch(stack: Stack) -> EventLog:
        logs.append(EventLog(stack.redis.url))
        return logs[-1]

    yield watch
    for log in logs:
        log.close()


async def progress(client: httpx.AsyncClient, auth: dict[str, str], job_id: str) -> dict[str, Any]:
    reply = await client.get(f"/jobs/{job_id}/progress/", headers=auth)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


async def wait_progress(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    job_id: str,
    done: Callable[[dict[str, Any]], bool],
    timeout: float,
    what: str,
) -> dict[str, Any]:
    """Poll the job's progress until ``done(body)``; that body."""
    deadline = time.monotonic() + timeout
    body = await progress(client, auth, job_id)
    while not done(body):
        assert time.monotonic() < deadline, f"job {job_id}: timed out waiting for {what}; last {body}"
        await asyncio.sleep(0.02)
        body = await progress(client, auth, job_id)
    return body


async def submit(client: httpx.AsyncClient, auth: dict[str, str], rows: int) -> str:
    reply = await submit_csv(client, auth, csv_of(rows), "people.csv")
    assert reply.status_code == 202, reply.text
    job_id: str = reply.json()["id"]
    return job_id


def running_past(percent: float) -> Callable[[dict[str, Any]], bool]:
    return lambda body: body["terminal"] or (body["state"] == "RUNNING" and (body["percent"] or 0) >= percent)


def terminal(body: dict[str, Any]) -> bool:
    return bool(body["terminal"])


def assert_user_safe(reason: str | None) -> None:
    """A reason an end user may read: present, no traceback, no exception repr, no file path."""
    assert reason, reason
    assert "Traceback" not in reason and ".py" not in reason and "Error(" not in reason, reason
    assert not re.search(r"(^|[\s'\"(])/[\w.]", reason), reason


async def test_a_pool_child_killed_late_in_an_import_gives_one_result(
    make_stack: Callable[..., Stack], events: Callable[[Stack], EventLog], auth: dict[str, str]
) -> None:
    """Killed past half way, with rows already saved: the redelivered run replaces them, and the job
    ends SUCCESS once (test_worker_recovery kills it early; this one checks nothing is counted twice)."""
    rows = 200_000
    stack = make_stack(spreadsheet_batch_rows="100")
    log = events(stack)
    async with stack.client() as client:
        job_id = await submit(client, auth, rows)
        body = await wait_progress(client, auth, job_id, running_past(50), 60, "half way")
        assert not body["terminal"], "the import ended before it could be killed"
        saved, _ = stack.rows(job_id)
        assert stack.kill_pool_children() == 1
        assert saved > 0
        final = await wait_progress(client, auth, job_id, terminal, 60, "the end")
        assert final["state"] == "SUCCESS", stack.worker.log.read_text()[-3000:]
        record = (await client.get(f"/jobs/{job_id}/", headers=auth)).json()
    assert record["state"] == "SUCCESS"
    assert record["result"]["rows_imported"] == rows
    assert stack.rows(job_id) == (rows, rows)
    job = stack.jobs.get(job_id)
    assert job is not None and job.attempts == 2
    log.assert_one_result(job_id, "SUCCESS")
    assert stack.results_logged() == 1


async def _kill_whole_worker_mid_job(stack: Stack, client: httpx.AsyncClient, auth: dict[str, str]) -> str:
    """Submit an import, SIGKILL the worker's whole process group while it runs, start a new worker."""
    job_id = await submit(client, auth, 200_000)
    body = await wait_progress(client, auth, job_id, running_past(10), 60, "the import to run")
    assert not body["terminal"], "the import ended before it could be killed"
    stack.worker.kill()
    job = stack.jobs.get(job_id)
    assert job is not None and job.state == "RUNNING" and job.attempts == 1
    stack.worker.start()
    return job_id


async def test_a_whole_worker_killed_mid_job_is_requeued_and_finishes_once(
    make_stack: Callable[..., Stack], events: Callable[[Stack], EventLog], auth: dict[str, str]
) -> None:
    stack = make_stack(spreadsheet_batch_rows="100")
    log = events(stack)
    async with stack.client() as client:
        job_id = await _kill_whole_worker_mid_job(stack, client, auth)
        final = await wait_progress(client, auth, job_id, terminal, 60, "the re-queued run")
        assert final["state"] == "SUCCESS", stack.worker.log.read_text()[-3000:]
    job = stack.jobs.get(job_id)
    assert job is not None and job.state == "SUCCESS" and job.attempts == 2
    assert job.result is not None and job.result["rows_imported"] == 200_000
    assert stack.rows(job_id) == (200_000, 200_000)
    log.assert_one_result(job_id, "SUCCESS")
    assert stack.results_logged() == 1


async def test_a_whole_worker_killed_at_the_attempts_limit_ends_failed(
    make_stack: Callable[..., Stack], events: Callable[[Stack], EventLog], auth: dict[str, str]
) -> None:
    stack = make_stack(spreadsheet_batch_rows="100", job_max_attempts="1")
    log = events(stack)
    async with stack.client() as client:
        job_id = await _kill_whole_worker_mid_job(stack, client, auth)
        final = await wait_progress(client, auth, job_id, terminal, 60, "the reaper")
        record = (await client.get(f"/jobs/{job_id}/", headers=auth)).json()
    assert final["state"] == "FAILED", final
    assert_user_safe(final["error_reason"])
    assert record["state"] == "FAILED" and record["error_reason"] == final["error_reason"]
    job = stack.jobs.get(job_id)
    assert job is not None and job.attempts == 1  # never started again
    log.assert_one_result(job_id, "FAILED")
    assert stack.rows(job_id) == (0, 0)  # the partial import is removed
    assert stack.results_logged() == 0


async def test_a_job_that_kills_its_worker_every_time_ends_failed_after_the_limit(
    make_stack: Callable[..., Stack], events: Callable[[Stack], EventLog], auth: dict[str, str]
) -> None:
    """A poison input, played honestly: the pool child running the job is SIGKILLed each time the job
    starts (a new attempt is counted in the DB). It ends FAILED after the limit and is never run again."""
    stack = make_stack(spreadsheet_batch_rows="100")
    log = events(stack)
    kills = 0
    async with stack.client() as client:
        job_id = await submit(client, auth, 100_000)
        deadline = time.monotonic() + 75
        while True:
            job = stack.jobs.get(job_id)
            assert job is not None
            if job.state not in ACTIVE:
                break
            if kills < job.attempts <= MAX_ATTEMPTS:  # a start that runs the input: it kills its process
                assert job.attempts == kills + 1
                assert stack.kill_pool_children() == 1
                kills += 1
            assert time.monotonic() < deadline, f"still {job.state} after {kills} kills"
            await asyncio.sleep(0.02)
        final = await wait_progress(client, auth, job_id, terminal, 10, "the terminal progress")
    assert kills == MAX_ATTEMPTS
    assert job.state == "FAILED", job.state
    assert_user_safe(job.error_reason)
    assert final["state"] == "FAILED" and final["error_reason"] == job.error_reason
    log.assert_one_result(job_id, "FAILED")
    # Never loops: once no message for it is left anywhere, it was not started again.
    wait_for(stack.queues_empty, "no message left for the job", 15)
    again = stack.jobs.get(job_id)
    assert again is not None and again.state == "FAILED" and again.attempts == job.attempts
    # Ended by the start past the limit (a task run records FAILED), or by the reaper first (none does).
    assert again.attempts in (MAX_ATTEMPTS, MAX_ATTEMPTS + 1)
    assert stack.results_logged() == (1 if again.attempts > MAX_ATTEMPTS else 0)
    assert stack.rows(job_id) == (0, 0)


async def _rows_per_second(stack: Stack, client: httpx.AsyncClient, auth: dict[str, str]) -> float:
    """This machine's import speed right now, with the stack's settings: a small import, timed from its
    start to its end as the DB recorded them."""
    rows = 20_000
    job_id = await submit(client, auth, rows)
    final = await wait_progress(client, auth, job_id, terminal, 60, "the calibration import")
    assert final["state"] == "SUCCESS"
    job = stack.jobs.get(job_id)
    assert job is not None and job.started_at is not None and job.finished_at is not None
    return rows / max(0.1, (job.finished_at - job.started_at).total_seconds())


async def test_redis_stopped_for_30_s_mid_run(make_stack: Callable[..., Stack], auth: dict[str, str]) -> None:
    """Submissions answer 503 with Retry-After while Redis is down; the running import goes on; when an
    empty Redis is back, the job writes its latest progress, ends in the DB and then in Redis, and the job
    that waited in the lost queue is re-queued: none stays stuck.

    One row per batch makes the import's speed the database's commit rate; the import is sized from a
    timed small one to outlast the outage by some 5-10 s. Should it end during the outage all the same (a
    machine that sped up), its end must still reach Redis once Redis is back.
    """
    stack = make_stack(spreadsheet_batch_rows="1")
    async with stack.client() as client:
        rate = await _rows_per_second(stack, client, auth)
        rows = min(900_000, max(50_000, int(rate * (OUTAGE_SECONDS + 10))))
        long_id = await submit(client, auth, rows)
        body = await wait_progress(client, auth, long_id, running_past(1), 60, "the long import to run")
        assert not body["terminal"]
        queued_id = await submit(client, auth, 1000)  # waits behind it (one pool process)
        assert (await progress(client, auth, queued_id))["state"] == "PENDING"
        before = (await progress(client, auth, long_id))["percent"]
        saved_before, _ = stack.rows(long_id)

        stack.redis.stop()
        down_since = time.monotonic()
        refused = 0
        while time.monotonic() - down_since < OUTAGE_SECONDS:
            reply = await submit_csv(client, auth)
            assert reply.status_code == 503, reply.text
            assert reply.headers["retry-after"].isdigit()
            assert reply.json()["error"]["code"] in {"service_unavailable", "broker_unavailable"}
            refused += 1
            read = await client.get(f"/jobs/{long_id}/progress/", headers=auth)
            assert read.status_code == 503 and read.headers["retry-after"].isdigit()
            await asyncio.sleep(1)
        saved_during, _ = stack.rows(long_id)
        job = stack.jobs.get(long_id)
        assert job is not None
        ended_during_outage = job.state not in ACTIVE
        stack.redis.start()  # empty: no progress records, no queues, no leases

        assert saved_during > saved_before, "the import did not go on while Redis was down"
        if not ended_during_outage:
            # Its next report recreates the record, with the progress made meanwhile.
            latest = await wait_progress(
                client,
                auth,
                long_id,
                lambda b: b["terminal"] or (b["percent"] or 0) > before,
                30,
                "new progress",
            )
            assert latest["state"] in ("RUNNING", "SUCCESS"), latest
        final = await wait_progress(client, auth, long_id, terminal, 90, "the long import's end")
        assert final["state"] == "SUCCESS", stack.worker.log.read_text()[-3000:]
        record = (await client.get(f"/jobs/{long_id}/", headers=auth)).json()
        assert record["state"] == "SUCCESS" and record["result"]["rows_imported"] == rows
        queued = await wait_progress(
            client, auth, queued_id, terminal, 30, "the queued job (its message was lost)"
        )
        assert queued["state"] == "SUCCESS"
        again = await submit_csv(client, auth)
        assert again.status_code == 202
        listing = (await client.get("/jobs/", headers=auth, params={"limit": 10})).json()
    # The calibration import, the long one, the queued one and the one after: no refused one left behind.
    assert len(listing["items"]) == 4
    assert {item["id"] for item in listing["items"]} >= {long_id, queued_id}
    assert refused >= 10
    assert stack.rows(long_id) == (rows, rows)
    assert stack.rows(queued_id) == (1000, 1000)


@pytest.fixture
def own_postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster of the test's own (``scripts/postgres.sh``), migrated: the test
    stops and starts it, never the session's server, and runs on the SQLite pass too. Without the
    PostgreSQL binaries it fails (``make test`` installs them), as a test with a missing service does."""
    script = Path(__file__).resolve().parent.parent / "scripts" / "postgres.sh"
    folder = tempfile.mkdtemp(prefix="jobpulse-faults-pg-")  # /tmp: the postgres user reaches it
    try:
        started = subprocess.run(
            [str(script), "start", folder], capture_output=True, text=True, timeout=60, check=False
        )
        assert started.returncode == 0, f"no PostgreSQL cluster could be started: {started.stderr}"
        url = started.stdout.strip()
        engine = create_db_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
    finally:
        subprocess.run([str(script), "stop", folder], capture_output=True, timeout=60, check=False)


async def test_postgres_restarted_mid_run(
    make_stack: Callable[..., Stack], auth: dict[str, str], own_postgres: str
) -> None:
    """The API answers 503 (not 500) while the database is down; the running import hits the outage,
    is retried once the database is back, and ends SUCCESS once."""
    server = PostgresServer(own_postgres)
    rows = 300_000
    stack = make_stack(database_url=own_postgres, spreadsheet_batch_rows="50")
    async with stack.client() as client:
        job_id = await submit(client, auth, rows)
        body = await wait_progress(client, auth, job_id, running_past(5), 60, "the import to run")
        assert not body["terminal"]
        server.stop()
        try:
            record = await client.get(f"/jobs/{job_id}/", headers=auth)
            assert record.status_code == 503, record.text
            assert record.headers["retry-after"].isdigit()
            assert record.json()["error"]["code"] == "database_unavailable"
            refused = await submit_csv(client, auth)
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"].isdigit()
            listing = await client.get("/jobs/", headers=auth)
            assert listing.status_code == 503, listing.text
            live = await progress(client, auth, job_id)  # Redis alone: still answers
            assert live["state"] == "RUNNING"
        finally:
            server.start()
        final = await wait_progress(client, auth, job_id, terminal, 60, "the retried import")
        assert final["state"] == "SUCCESS", stack.worker.log.read_text()[-3000:]
        record = await client.get(f"/jobs/{job_id}/", headers=auth)
    assert record.json()["result"]["rows_imported"] == rows
    job = stack.jobs.get(job_id)
    # The retry after a database error is the same attempt: the attempts cap counts workers that died.
    assert job is not None and job.state == "SUCCESS" and job.attempts == 1
    assert stack.rows(job_id) == (rows, rows)
    assert stack.results_logged() == 1
