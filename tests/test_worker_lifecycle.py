"""How a job's life ends when things go wrong: the attempts cap, time limits (soft, inside file decoding,
and hard), a redelivered message that finds the job ended, and a whole worker killed mid-job (the reaper
of the next worker re-queues it). Real Redis, database and Celery workers, each test on its own."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from sqlalchemy.exc import OperationalError

from jobpulse.api.app import create_app
from jobpulse.broker import create_celery
from jobpulse.errors import BadInput
from jobpulse.handler import JobRun, Outcome
from jobpulse.progress.record import ProgressUpdate
from jobpulse.settings import Settings
from jobpulse.spreadsheet.job import SpreadsheetImport
from jobpulse.spreadsheet.kind import KIND as SPREADSHEET
from jobpulse.states import State
from jobpulse.worker import context as worker_contexts
from jobpulse.worker.context import WorkerContext
from jobpulse.worker.reaper import ReaperMemory, reap_once
from jobpulse.worker.recovery import GAVE_UP_REASON
from jobpulse.worker.task import BoundHandler, bind_handler, run_job
from tests.jobs import apoll_until, submit_csv
from tests.services import RedisServer, Worker
from tests.test_reaper import Stack, fresh_database, new_job, open_stack, progress

pytestmark = pytest.mark.integration

ROWS = 300_000
BIG_CSV = b"id,name\n" + b"".join(b"%d,person %d\n" % (n, n) for n in range(ROWS))


@pytest.fixture
def stack(tmp_path: Path, own_redis: RedisServer) -> Iterator[Stack]:
    with open_stack(tmp_path, own_redis.url, job_lock_seconds=2, job_max_attempts=2) as opened:
        yield opened


def Raises(error: BaseException) -> BoundHandler:  # noqa: N802 (reads as the handler it makes)
    """A spreadsheet handler whose work raises ``error``."""

    def run(job: JobRun) -> Outcome:
        raise error

    return bind_handler(SPREADSHEET, run)


def Finishes() -> BoundHandler:  # noqa: N802
    """A spreadsheet handler whose work succeeds at once."""
    return bind_handler(SPREADSHEET, lambda job: Outcome(State.SUCCESS))


def decoding_error(cause: BaseException) -> BadInput:
    """What a reader that wraps every error in the file makes of ``cause``."""
    try:
        try:
            raise cause
        except BaseException as exc:
            raise BadInput("The file could not be read; it may be damaged.") from exc
    except BadInput as wrapped:
        return wrapped


@pytest.mark.timeout(30)
def test_the_soft_time_limit_inside_decoding_is_a_time_limit_not_bad_input(stack: Stack) -> None:
    timed_out, damaged = new_job(stack), new_job(stack)
    records = stack.context.jobs
    assert run_job(stack.context, timed_out.id, Raises(decoding_error(SoftTimeLimitExceeded())))
    assert run_job(stack.context, damaged.id, Raises(decoding_error(ValueError("bad zip"))))
    ended = records.get(timed_out.id)
    assert ended is not None
    assert (ended.state, ended.error_reason) == ("FAILED", "The job took longer than its 60-minute limit.")
    assert progress(stack, timed_out.id)["state"] == "FAILED"
    rejected = records.get(damaged.id)
    assert rejected is not None and rejected.state == "REJECTED_BAD_INPUT"


@pytest.mark.timeout(30)
def test_a_start_over_the_attempts_cap_ends_failed(stack: Stack) -> None:
    records = stack.context.jobs
    job = new_job(stack, starts=stack.settings.job_max_attempts)  # each start's worker died
    assert run_job(stack.context, job.id, bind_handler(SPREADSHEET, SpreadsheetImport())) is State.FAILED
    record = records.get(job.id)
    assert record is not None
    assert (record.state, record.error_reason, record.attempts) == ("FAILED", GAVE_UP_REASON, 3)
    body = progress(stack, job.id)
    assert (body["state"], body["error_reason"]) == ("FAILED", GAVE_UP_REASON)


@pytest.mark.timeout(30)
def test_a_redelivered_message_copies_the_databases_end_to_redis(stack: Stack) -> None:
    running = ProgressUpdate(State.RUNNING, percent=40.0, current=400, total=1000)
    job = new_job(stack, starts=1, progress=running)
    # The worker wrote its end to the database and died before writing Redis.
    assert stack.context.jobs.finish(job.id, State.REJECTED_BAD_INPUT, percent=40.0, error_reason="Bad row.")
    assert run_job(stack.context, job.id, bind_handler(SPREADSHEET, SpreadsheetImport())) is None
    body = progress(stack, job.id)
    assert (body["state"], body["error_reason"], body["total"]) == ("REJECTED_BAD_INPUT", "Bad row.", "1000")


@pytest.mark.timeout(30)
def test_a_job_killed_at_the_hard_time_limit_ends_failed(stack: Stack) -> None:
    job = new_job(stack, starts=1, progress=ProgressUpdate(State.RUNNING, percent=10.0))
    done = new_job(stack, starts=1)
    assert stack.context.jobs.finish(done.id, State.SUCCESS, percent=100.0)
    task = stack.app.tasks[SPREADSHEET.task]
    try:
        # What Celery's main process calls after it killed the pool child at the hard limit.
        task.on_failure(TimeLimitExceeded(3630), "task-id", [job.id], {}, None)
        task.on_failure(TimeLimitExceeded(3630), "task-id", [done.id], {}, None)
        task.on_failure(RuntimeError("other"), "task-id", [done.id], {}, None)
    finally:
        context = worker_contexts._contexts.pop((id(stack.app), os.getpid()), None)
        if context is not None:
            context.close()
    record = stack.context.jobs.get(job.id)
    assert record is not None
    reason = "The job took longer than its 60-minute limit."
    assert (record.state, record.error_reason) == ("FAILED", reason)
    body = progress(stack, job.id)
    assert (body["state"], body["error_reason"], body["percent"]) == ("FAILED", reason, "10")
    finished = stack.context.jobs.get(done.id)
    assert finished is not None and finished.state == "SUCCESS"


# Real workers, each with a Redis and a database of its own.


WorkerFactory = Callable[..., tuple[Worker, Settings]]


@pytest.fixture
def own_worker(base_env: dict[str, str], tmp_path: Path) -> Iterator[WorkerFactory]:
    """Start workers (``**env`` overrides) on one Redis and one database of the test's own."""
    redis_server = RedisServer(tmp_path / "redis")
    redis_server.start()
    database_url = fresh_database(tmp_path)
    workers: list[Worker] = []

    def start(name: str = "worker", **env: str) -> tuple[Worker, Settings]:
        overrides = {f"JOBPULSE_{key.upper()}": value for key, value in env.items()}
        full = {**base_env, "REDIS_URL": redis_server.url, "DATABASE_URL": database_url, **overrides}
        worker = Worker(full, tmp_path / f"{name}.log", concurrency=1)
        workers.append(worker)
        worker.start()
        settings = Settings(
            redis_url=redis_server.url,
            database_url=database_url,
            secret_key=full["JOBPULSE_SECRET_KEY"],
            data_dir=Path(full["JOBPULSE_DATA_DIR"]),
        )
        return worker, settings

    yield start
    for worker in workers:
        worker.stop()
    redis_server.stop()


async def wait_running(client: httpx.AsyncClient, auth: dict[str, str], job_id: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        body = (await client.get(f"/jobs/{job_id}/progress/", headers=auth)).json()
        if body["state"] == "RUNNING" and (body["percent"] or 0) > 10:
            return
        assert time.monotonic() < deadline, body


@pytest.mark.timeout(120)
async def test_a_worker_killed_outright_has_its_job_requeued_by_the_next_workers_reaper(
    own_worker: WorkerFactory, auth: dict[str, str]
) -> None:
    fast = {"job_lock_seconds": "2", "reaper_interval_seconds": "0.5"}
    first, settings = own_worker("first", **fast)
    app = create_app(settings)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            job_id = (await submit_csv(client, auth, BIG_CSV, "big.csv")).json()["id"]
            await wait_running(client, auth, job_id)
            first.kill()  # the main process and its pool child at once: nothing acks or rejects
            second, _ = own_worker("second", **fast)
            final = await apoll_until(client, auth, job_id, {"SUCCESS", "FAILED"}, timeout=90)
            assert final["state"] == "SUCCESS", second.log.read_text()[-3000:]
            record = (await client.get(f"/jobs/{job_id}/", headers=auth)).json()
            assert record["result"]["rows_imported"] == ROWS
    finally:
        await app.state.services.aclose()
    assert b"re-queued after attempt 1" in second.log.read_bytes()
    context = WorkerContext.create(settings)
    try:
        job = context.jobs.get(job_id)
        assert job is not None and job.attempts == 2
        assert len(context.jobs.rows(job_id, after=0, limit=ROWS + 10)) == ROWS
    finally:
        context.close()


@pytest.mark.timeout(120)
async def test_an_input_that_kills_its_worker_every_time_ends_failed(
    own_worker: WorkerFactory, auth: dict[str, str]
) -> None:
    # The reaper stays out of it (one pass at start): redelivery and the attempts cap do the work.
    worker, settings = own_worker(job_lock_seconds="2", job_max_attempts="2", reaper_interval_seconds="3600")
    assert worker.process is not None
    app = create_app(settings)
    context = WorkerContext.create(settings)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            job_id = (await submit_csv(client, auth, BIG_CSV, "big.csv")).json()["id"]
            killed = 0
            deadline = time.monotonic() + 100
            while True:
                job = context.jobs.get(job_id)
                assert job is not None
                if State(job.state).terminal:
                    break
                if job.state == "RUNNING" and killed < job.attempts <= 2:  # the third start ends it
                    for child in psutil.Process(worker.process.pid).children():
                        child.kill()  # as a SIGABRT in a native decoder would
                    killed = job.attempts
                assert time.monotonic() < deadline, (job.state, job.attempts)
                time.sleep(0.02)
            assert (job.state, job.error_reason, job.attempts) == ("FAILED", GAVE_UP_REASON, 3)
            assert killed == 2
            final = await apoll_until(client, auth, job_id, {"FAILED"}, timeout=10)
            assert final["error_reason"] == GAVE_UP_REASON
    finally:
        context.close()
        await app.state.services.aclose()


@pytest.mark.timeout(90)
async def test_the_soft_time_limit_ends_a_real_job_failed(
    own_worker: WorkerFactory, auth: dict[str, str]
) -> None:
    _, settings = own_worker(job_time_limit_seconds="1")
    app = create_app(settings)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            job_id = (await submit_csv(client, auth, BIG_CSV, "big.csv")).json()["id"]
            final = await apoll_until(
                client, auth, job_id, {"SUCCESS", "FAILED", "REJECTED_BAD_INPUT"}, timeout=60
            )
            assert (final["state"], final["error_reason"]) == (
                "FAILED",
                "The job took longer than its 1-second limit.",
            )
            record = (await client.get(f"/jobs/{job_id}/", headers=auth)).json()
            assert record["state"] == "FAILED"
    finally:
        await app.state.services.aclose()


@pytest.mark.timeout(60)
def test_a_real_worker_copies_an_ended_jobs_state_to_redis(own_worker: WorkerFactory) -> None:
    _, settings = own_worker(reaper_interval_seconds="3600")  # only the delivery can repair it
    context = WorkerContext.create(settings)
    app: Any = None
    try:
        app = create_celery(settings, context.kinds)
        stack_ = Stack(context, app, context.redis)
        job = new_job(stack_, starts=1, progress=ProgressUpdate(State.RUNNING, percent=40.0))
        assert context.jobs.finish(job.id, State.SUCCESS, percent=100.0)
        app.send_task(SPREADSHEET.task, args=[job.id], queue=SPREADSHEET.queue)
        deadline = time.monotonic() + 30
        while progress(stack_, job.id)["state"] != "SUCCESS":
            assert time.monotonic() < deadline, progress(stack_, job.id)
            time.sleep(0.05)
        assert progress(stack_, job.id)["percent"] == "100"
    finally:
        if app is not None:
            app.close()
        context.close()


@pytest.mark.timeout(30)
def test_a_database_error_is_retried_without_counting_an_attempt_or_looking_lost(stack: Stack) -> None:
    """A start that meets a database error waits for its retry: the reaper leaves the lease-less job
    alone, and the retry's start is not another attempt (three database blips must not end a job
    "stopped unexpectedly")."""
    records = stack.context.jobs
    job = new_job(stack)
    outage = OperationalError("INSERT INTO import_rows ...", {}, Exception("server closed the connection"))
    for _ in range(stack.settings.job_max_attempts + 1):
        with pytest.raises(OperationalError):
            run_job(stack.context, job.id, Raises(outage))
        record = records.get(job.id)
        assert record is not None and (record.state, record.attempts) == ("RUNNING", 1)
        assert stack.context.redis.exists(stack.context.keys.retry(job.id))
    now = time.time()
    memory = ReaperMemory()
    for moment in (now, now + stack.settings.job_lock_seconds + 1):
        report = reap_once(stack.context, stack.app, moment, memory)
        assert job.id not in report.lease_less + report.requeued + report.failed
    # The retry runs: the same attempt, to its end; the marker is used up.
    assert run_job(stack.context, job.id, Finishes()) is State.SUCCESS
    record = records.get(job.id)
    assert record is not None and (record.state, record.attempts) == ("SUCCESS", 1)
    assert not stack.context.redis.exists(stack.context.keys.retry(job.id))
