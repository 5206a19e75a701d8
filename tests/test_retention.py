"""Retention: ``prune`` and ``jobpulse prune`` against a real database (a file of the test's own, so
no other test's records are in reach) and the session's Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, update
from sqlalchemy.engine import make_url

from jobpulse.db.engine import create_db_engine
from jobpulse.db.migrate import upgrade
from jobpulse.db.models import Job, Video
from jobpulse.db.repository import JobRepository, NewJob, RecordRepository, VideoRepository, utcnow
from jobpulse.ids import new_job_id
from jobpulse.keys import Keyspace
from jobpulse.progress.record import ProgressUpdate
from jobpulse.progress.store import ProgressStore
from jobpulse.retention import prune
from jobpulse.settings import Settings
from jobpulse.states import State
from tests.services import RedisServer, service_env

pytestmark = pytest.mark.integration

DAY = 86400.0


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A database of the test's own: a SQLite file, or a fresh database on the PostgreSQL server the
    suite runs against (JOBPULSE_TEST_DATABASE_URL), dropped afterwards."""
    server = os.environ.get("JOBPULSE_TEST_DATABASE_URL", "")
    if not server.startswith("postgresql"):
        yield f"sqlite:///{tmp_path / 'retention.db'}"
        return
    name = f"retention_{uuid.uuid4().hex[:12]}"
    admin = create_db_engine(server)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def world(tmp_path: Path, redis_server: RedisServer, database_url: str) -> Iterator[World]:
    engine = create_db_engine(database_url)
    upgrade(engine)
    settings = Settings(
        redis_url=redis_server.url,
        database_url=database_url,
        data_dir=tmp_path / "data",
        retention_days=30,
    )
    client = redis.Redis.from_url(redis_server.url)
    yield World(settings, engine, client)
    client.close()
    engine.dispose()


class World:
    """A database, a data dir and Redis, with helpers that make records of a given age."""

    def __init__(self, settings: Settings, engine: Engine, client: redis.Redis) -> None:
        self.settings = settings
        self.engine = engine
        self.redis = client
        self.keys = Keyspace.from_settings(settings)
        self.store = ProgressStore(client, self.keys)
        self.jobs = JobRepository(engine)
        self.videos = VideoRepository(engine)

    def make(self, kind: str, state: State, *, ended_days_ago: float | None = None, rows: int = 0) -> str:
        """A record of ``kind`` in ``state`` (terminal ones ended ``ended_days_ago``), with an upload
        folder, a media folder for videos, ``rows`` imported rows and a progress record."""
        records: RecordRepository[Job] | RecordRepository[Video] = (
            self.videos if kind == "video" else self.jobs
        )
        record_id = new_job_id()
        new = NewJob(record_id, kind, "owner-1", {}, "input.csv", 10, "text/csv")
        records.create(new)
        folder = self.settings.upload_dir / record_id
        folder.mkdir(parents=True)
        (folder / "input.csv").write_bytes(b"a\n1\n")
        if kind == "video":
            media = self.settings.media_dir / record_id
            media.mkdir(parents=True)
            (media / "360p.mp4").write_bytes(b"video")
        if rows:
            self.jobs.insert_rows(record_id, [(n, {"a": n}) for n in range(1, rows + 1)])
        self.store.write(record_id, ProgressUpdate(state), owner="owner-1", kind=kind)
        if state.terminal:
            assert records.finish(record_id, state)
            assert ended_days_ago is not None
            model = Video if kind == "video" else Job
            with self.engine.begin() as conn:
                conn.execute(
                    update(model)
                    .where(model.id == record_id)
                    .values(finished_at=utcnow() - timedelta(days=ended_days_ago))
                )
        return record_id

    def exists(self, record_id: str) -> bool:
        """Whether anything of ``record_id`` is left: record, rows, folders, progress."""
        return any(
            [
                self.jobs.get(record_id) is not None,
                self.videos.get(record_id) is not None,
                self.jobs.count_rows([record_id]) > 0,
                (self.settings.upload_dir / record_id).exists(),
                (self.settings.media_dir / record_id).exists(),
                bool(self.redis.exists(self.keys.progress(record_id))),
            ]
        )

    def whole(self, record_id: str) -> bool:
        """Whether the record and its upload folder and progress record are all there."""
        return (
            (self.jobs.get(record_id) or self.videos.get(record_id)) is not None
            and (self.settings.upload_dir / record_id).exists()
            and bool(self.redis.exists(self.keys.progress(record_id)))
        )


def orphan(root: Path, age_days: float) -> Path:
    """A folder named like a job id that no record owns, last changed ``age_days`` ago."""
    folder = root / str(uuid.uuid4())
    folder.mkdir(parents=True)
    (folder / "input.csv").write_bytes(b"x")
    moment = time.time() - age_days * DAY
    for path in (folder / "input.csv", folder):
        os.utime(path, (moment, moment))
    return folder


def test_prune_removes_only_what_ended_before_the_retention_period(world: World) -> None:
    old_import = world.make("spreadsheet_import", State.SUCCESS, ended_days_ago=31, rows=250)
    old_failed = world.make("ai_inference", State.FAILED, ended_days_ago=45)
    old_video = world.make("video", State.READY, ended_days_ago=40)
    recent = world.make("spreadsheet_import", State.SUCCESS, ended_days_ago=29, rows=3)
    recent_video = world.make("video", State.CANCELLED, ended_days_ago=1)
    running = world.make("spreadsheet_import", State.RUNNING, rows=5)
    with world.engine.begin() as conn:  # active for ages: never pruned, however old
        conn.execute(update(Job).where(Job.id == running).values(created_at=utcnow() - timedelta(days=400)))
    old_orphan = orphan(world.settings.upload_dir, 31)
    old_media_orphan = orphan(world.settings.media_dir, 60)
    young_orphan = orphan(world.settings.upload_dir, 0.01)  # an upload streaming in: no record yet

    dry = prune(world.settings, world.jobs, world.videos, world.redis, dry_run=True, batch_size=2)
    assert (dry.jobs, dry.videos, dry.rows, dry.files, dry.orphans) == (2, 1, 250, 4, 2)
    assert dry.dry_run and "would remove 2 jobs" in dry.summary()
    for record_id in (old_import, old_failed, old_video, recent, recent_video, running):
        assert world.whole(record_id)
    assert old_orphan.exists() and old_media_orphan.exists()

    report = prune(world.settings, world.jobs, world.videos, world.redis, batch_size=2)
    assert (report.jobs, report.videos, report.rows, report.files, report.orphans) == (2, 1, 250, 4, 2)
    for record_id in (old_import, old_failed, old_video):
        assert not world.exists(record_id), record_id
    for record_id in (recent, recent_video, running):
        assert world.whole(record_id), record_id
    assert (world.settings.media_dir / recent_video).exists()
    assert world.jobs.count_rows([recent]) == 3 and world.jobs.count_rows([running]) == 5
    assert not old_orphan.exists() and not old_media_orphan.exists() and young_orphan.exists()

    again = prune(world.settings, world.jobs, world.videos, world.redis)
    assert (again.jobs, again.videos, again.orphans) == (0, 0, 0)
    later = prune(world.settings, world.jobs, world.videos, world.redis, now=utcnow() + timedelta(days=30))
    assert (later.jobs, later.videos) == (1, 1)  # the 29-day-old import, the day-old video
    assert world.whole(running) and not world.exists(recent) and not world.exists(recent_video)


def test_zero_days_keeps_everything(world: World) -> None:
    old = world.make("spreadsheet_import", State.SUCCESS, ended_days_ago=3650, rows=2)
    settings = world.settings.model_copy(update={"retention_days": 0})
    report = prune(settings, world.jobs, world.videos, world.redis)
    assert report.cutoff is None and (report.jobs, report.rows) == (0, 0)
    assert "retention is off" in report.summary()
    assert world.whole(old)
    shorter = prune(settings, world.jobs, world.videos, world.redis, older_than_days=10)
    assert shorter.jobs == 1 and not world.exists(old)


def test_the_prune_command(world: World) -> None:
    old = world.make("spreadsheet_import", State.REJECTED_BAD_INPUT, ended_days_ago=8, rows=4)
    recent = world.make("video", State.READY, ended_days_ago=2)
    env = service_env(
        {
            "REDIS_URL": str(world.settings.redis_url),
            "DATABASE_URL": str(world.settings.database_url),
            "JOBPULSE_RETENTION_DAYS": "7",
        }
    )
    data_dir = str(world.settings.data_dir)

    def jobpulse(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "jobpulse", "prune", "--data-dir", data_dir, *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    dry = jobpulse("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would remove 1 jobs (4 rows), 0 videos, 1 folders" in dry.stdout
    assert world.whole(old) and world.whole(recent)

    done = jobpulse()
    assert done.returncode == 0, done.stderr
    assert "removed 1 jobs (4 rows), 0 videos" in done.stdout
    assert not world.exists(old) and world.whole(recent)

    override = jobpulse("--older-than-days", "1")
    assert override.returncode == 0 and "removed 0 jobs (0 rows), 1 videos" in override.stdout
    assert not world.exists(recent)

    refused = jobpulse("--older-than-days", "0")
    assert refused.returncode == 2 and "older-than-days" in refused.stderr
