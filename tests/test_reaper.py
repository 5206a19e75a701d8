"""The reaper's pass (``reap_once``) against a real Redis and a real database of the test's own: lost
workers' jobs re-queued and then FAILED at the attempts cap, progress records kept alive and recreated,
terminal database states copied to Redis, queued jobs re-sent after Redis lost its data; and the runner's
locks and retention call. Time is passed in, so no test waits for the grace periods."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import update

from jobpulse.db.engine import create_db_engine
from jobpulse.db.migrate import upgrade
from jobpulse.db.models import Job, Tracked
from jobpulse.db.repository import NewJob, utcnow
from jobpulse.ids import new_job_id
from jobpulse.progress.lease import Lease
from jobpulse.progress.record import ProgressUpdate
from jobpulse.settings import Settings
from jobpulse.states import State
from jobpulse.worker.app import create_worker_app
from jobpulse.worker.context import WorkerContext
from jobpulse.worker.reaper import Reaper, ReaperMemory, reap_once
from jobpulse.worker.recovery import GAVE_UP_REASON
from tests.conftest import SECRET
from tests.services import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def fresh_database(folder: Path) -> str:
    """A migrated SQLite database of the test's own (no other test's jobs for the reaper to see)."""
    url = f"sqlite:///{folder / 'jobpulse.db'}"
    engine = create_db_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@dataclass
class Stack:
    """A worker's view of a Redis and a database of the test's own, and an app that sends messages."""

    context: WorkerContext
    app: Any
    client: redis.Redis

    @property
    def settings(self) -> Settings:
        return self.context.settings


@contextmanager
def open_stack(folder: Path, redis_url: str, **overrides: Any) -> Iterator[Stack]:
    """A :class:`Stack` on ``redis_url`` and a fresh database in ``folder``, with settings ``overrides``."""
    settings = Settings(
        redis_url=redis_url,
        database_url=fresh_database(folder),
        secret_key=SECRET,
        data_dir=folder / "data",
        **overrides,
    )
    context = WorkerContext.create(settings)
    app = create_worker_app(settings)
    client = redis.Redis.from_url(redis_url)
    try:
        yield Stack(context, app, client)
    finally:
        client.close()
        app.close()
        context.close()


@pytest.fixture
def stack(tmp_path: Path, own_redis: RedisServer) -> Iterator[Stack]:
    with open_stack(tmp_path, own_redis.url, job_lock_seconds=2, job_max_attempts=2) as opened:
        yield opened


def new_job(
    stack: Stack,
    *,
    state: State = State.PENDING,
    starts: int = 0,
    kind: str = "spreadsheet_import",
    progress: ProgressUpdate | None = None,
) -> Tracked:
    """A job in the database, started ``starts`` times (state RUNNING), or moved to ``state``; and its
    progress record (``progress``, or the state's plain record)."""
    context = stack.context
    declared = context.kinds.get(kind)
    assert declared is not None
    records = context.records(declared)
    job_id = new_job_id()
    new = NewJob(job_id, kind, "owner-1", {}, "people.csv", 10, "text/csv")
    records.create(new)
    for _ in range(starts):
        records.start(job_id, State.RUNNING)
    if state not in (State.PENDING, State.RUNNING):
        assert records.set_state(job_id, state)
    update_ = progress or ProgressUpdate(State.RUNNING if starts else state, percent=0.0)
    context.store.write(job_id, update_, owner="owner-1", kind=kind)
    record: Tracked | None = records.get(job_id)
    assert record is not None
    return record


def queued(client: redis.Redis, queue: str) -> list[tuple[str, str, bool]]:
    """The messages waiting in ``queue`` (kombu's Redis list): (task name, job id, has an ETA)."""
    out = []
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        headers = message["headers"]
        out.append((headers["task"], args[0], headers.get("eta") is not None))
    return out


def progress(stack: Stack, job_id: str) -> dict[str, str]:
    raw = stack.context.store.read(job_id)
    assert raw is not None, f"no progress record for {job_id}"
    return {key.decode(): value.decode() for key, value in raw.items()}


def test_a_lease_less_running_job_is_requeued_then_failed_at_the_cap(stack: Stack) -> None:
    settings, client = stack.settings, stack.client
    running = ProgressUpdate(State.RUNNING, percent=40.0, current=400, total=1000)
    lost = new_job(stack, starts=1, progress=running)
    alive = new_job(stack, starts=1)
    assert Lease(stack.context.redis, stack.context.keys, alive.id).acquire()
    now = time.time()
    memory = ReaperMemory()

    first = reap_once(stack.context, stack.app, now, memory)
    assert first.lease_less == [lost.id]
    assert first.requeued == [] and queued(client, "imports") == []
    assert reap_once(stack.context, stack.app, now + 1, memory).requeued == []  # within the lease's length

    due = reap_once(stack.context, stack.app, now + settings.job_lock_seconds + 0.5, memory)
    assert due.requeued == [lost.id]
    assert queued(client, "imports") == [("jobpulse.spreadsheet_import", lost.id, False)]
    # Its message waits in the queue: not sent again.
    later = reap_once(stack.context, stack.app, now + settings.job_lock_seconds + 3, memory)
    assert later.requeued == [] and later.lease_less == []
    assert len(queued(client, "imports")) == 1

    # A worker starts it again (attempt 2 of 2) and dies too: after a lease's length it ends FAILED.
    stack.context.jobs.start(lost.id, State.RUNNING)
    again = reap_once(stack.context, stack.app, now + 10, memory)
    assert again.lease_less == [lost.id] and again.failed == []
    final = reap_once(stack.context, stack.app, now + 10 + settings.job_lock_seconds + 0.5, memory)
    assert final.failed == [lost.id] and final.requeued == []
    record = stack.context.jobs.get(lost.id)
    assert record is not None
    assert (record.state, record.error_reason, record.attempts) == ("FAILED", GAVE_UP_REASON, 2)
    body = progress(stack, lost.id)
    assert (body["state"], body["error_reason"]) == ("FAILED", GAVE_UP_REASON)
    assert (body["percent"], body["current"], body["total"]) == ("40", "400", "1000")
    assert len(queued(client, "imports")) == 1
    assert client.hkeys(stack.context.keys.reaper_lost) == []
    # The leased job was never touched.
    alive_now = stack.context.jobs.get(alive.id)
    assert alive_now is not None and alive_now.state == "RUNNING"


def test_a_running_video_without_a_lease_is_requeued_to_its_queue(stack: Stack) -> None:
    video = new_job(stack, kind="video", state=State.PROCESSING)
    stack.context.videos.start(video.id, State.PROCESSING)
    now = time.time()
    memory = ReaperMemory()
    reap_once(stack.context, stack.app, now, memory)
    report = reap_once(stack.context, stack.app, now + stack.settings.job_lock_seconds, memory)
    assert report.requeued == [video.id]
    assert queued(stack.client, "media") == [("jobpulse.video", video.id, False)]


def test_progress_records_of_queued_jobs_are_kept_alive_and_recreated(stack: Stack) -> None:
    keys = stack.context.keys
    waiting = new_job(stack)
    stack.client.pexpire(keys.progress(waiting.id), 5000)  # about to expire while its message waits
    missing = new_job(stack)
    stack.client.delete(keys.progress(missing.id))
    finished = new_job(stack, starts=1)
    assert stack.context.jobs.finish(finished.id, State.SUCCESS, percent=100.0)
    stack.context.store.write(finished.id, ProgressUpdate(State.SUCCESS, percent=100.0), owner="o", kind="k")

    report = reap_once(stack.context, stack.app, time.time())

    assert report.refreshed == 1 and report.recreated == [missing.id]
    assert stack.client.pttl(keys.progress(waiting.id)) > keys.active_ttl_ms - 60_000
    body = progress(stack, missing.id)
    assert (body["state"], body["owner"], body["kind"]) == ("PENDING", "owner-1", "spreadsheet_import")
    assert body["message"] == "Waiting for a worker"
    # A terminal record keeps its longer TTL.
    assert stack.client.pttl(keys.progress(finished.id)) > keys.active_ttl_ms


def test_a_terminal_database_state_is_copied_to_redis(stack: Stack) -> None:
    running = ProgressUpdate(State.RUNNING, percent=40.0, current=400, total=1000)
    # A worker wrote FAILED to the database and then died (or Redis was away for its terminal write).
    failed = new_job(stack, starts=1, progress=running)
    assert stack.context.jobs.finish(failed.id, State.FAILED, percent=40.0, error_reason="Broken.")
    # One that succeeded, whose record Redis lost altogether.
    succeeded = new_job(stack, starts=1, progress=running)
    assert stack.context.jobs.finish(succeeded.id, State.SUCCESS, percent=100.0)
    stack.client.delete(stack.context.keys.progress(succeeded.id))
    # One whose worker's first write was lost: Redis still says PENDING.
    unstarted = new_job(stack)
    stack.context.jobs.start(unstarted.id, State.RUNNING)
    assert stack.context.jobs.finish(unstarted.id, State.SUCCESS, percent=100.0)
    memory = ReaperMemory()

    report = reap_once(stack.context, stack.app, time.time(), memory)

    assert sorted(report.mirrored) == sorted([failed.id, succeeded.id, unstarted.id])
    assert progress(stack, unstarted.id)["state"] == "SUCCESS"
    body = progress(stack, failed.id)
    assert (body["state"], body["error_reason"], body["percent"]) == ("FAILED", "Broken.", "40")
    assert (body["current"], body["total"]) == ("400", "1000")
    body = progress(stack, succeeded.id)
    assert (body["state"], body["percent"], body["owner"]) == ("SUCCESS", "100", "owner-1")
    assert stack.client.pttl(stack.context.keys.progress(succeeded.id)) > stack.context.keys.active_ttl_ms
    assert reap_once(stack.context, stack.app, time.time(), memory).mirrored == []


def test_losing_the_epoch_requeues_queued_jobs(stack: Stack) -> None:
    client = stack.client
    assert reap_once(stack.context, stack.app, time.time()).epoch_lost  # a new Redis: marked now
    pending = new_job(stack)
    fallback = new_job(stack, kind="ai_inference", state=State.FALLBACK_TO_GPU)
    calm = reap_once(stack.context, stack.app, time.time())
    assert not calm.epoch_lost and calm.requeued == []

    client.flushall()  # Redis restarted empty: the queued messages are gone with the rest
    report = reap_once(stack.context, stack.app, time.time())

    assert report.epoch_lost
    assert sorted(report.requeued) == sorted([pending.id, fallback.id])
    assert queued(client, "imports") == [("jobpulse.spreadsheet_import", pending.id, False)]
    assert queued(client, "ai-gpu") == [("jobpulse.ai_inference.gpu", fallback.id, False)]
    assert queued(client, "ai") == [("jobpulse.ai_inference.cpu_after_gpu_wait", fallback.id, True)]
    assert sorted(report.recreated) == sorted([pending.id, fallback.id])
    assert progress(stack, fallback.id)["state"] == "FALLBACK_TO_GPU"
    assert not reap_once(stack.context, stack.app, time.time()).epoch_lost


def test_a_job_queued_longer_than_the_visibility_timeout_is_sent_again(stack: Stack) -> None:
    client = stack.client
    reap_once(stack.context, stack.app, time.time())  # the new Redis's epoch
    waiting = new_job(stack)
    patience = stack.settings.visibility_timeout_seconds
    now = time.time()
    assert reap_once(stack.context, stack.app, now).requeued == []  # it may well be in the queue
    memory = ReaperMemory()
    assert reap_once(stack.context, stack.app, now + patience + 1, memory).requeued == [waiting.id]
    assert queued(client, "imports") == [("jobpulse.spreadsheet_import", waiting.id, False)]
    assert reap_once(stack.context, stack.app, now + patience + 2, memory).requeued == []  # once per timeout
    assert reap_once(stack.context, stack.app, now + 2 * patience + 2, memory).requeued == [waiting.id]


def test_a_lease_whose_key_vanished_is_taken_back(stack: Stack) -> None:
    keys, client = stack.context.keys, stack.client
    lease = Lease(stack.context.redis, keys, str(uuid.uuid4()))
    assert lease.acquire()
    client.delete(keys.lock(lease.key.rsplit(":", 1)[1]))  # Redis restarted empty
    assert lease.renew()
    assert client.get(lease.key) == lease.token.encode()
    assert 0 < client.pttl(lease.key) <= keys.lock_ttl_ms
    client.set(lease.key, "another worker")
    assert not lease.renew()
    assert client.get(lease.key) == b"another worker"


def test_one_worker_of_many_makes_each_pass_and_retention_runs(stack: Stack) -> None:
    settings = stack.settings.model_copy(update={"retention_days": 1.0})
    old = new_job(stack)
    assert stack.context.jobs.finish(old.id, State.SUCCESS)
    with stack.context.jobs.session() as session, session.begin():
        session.execute(update(Job).where(Job.id == old.id).values(finished_at=utcnow() - timedelta(days=2)))
    first, second = Reaper(stack.app, settings), Reaper(stack.app, settings)
    try:
        now = time.time()
        assert first.tick(now) is not None
        assert second.tick(now) is None  # the pass's lock is held for the interval
        assert stack.context.jobs.get(old.id) is None  # retention ran (once per prune interval)
    finally:
        first.stop()
        second.stop()
