"""What a worker process needs, made lazily once per process (after Celery forks its pool)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy import Engine

from jobpulse.db.engine import create_db_engine
from jobpulse.db.repository import JobRepository, RecordRepository, VideoRepository
from jobpulse.keys import Keyspace
from jobpulse.progress.connection import sync_redis
from jobpulse.progress.store import ProgressStore
from jobpulse.settings import Settings
from jobpulse.states import JobKind

__all__ = ["WorkerContext", "worker_context"]


@dataclass
class WorkerContext:
    """Settings and connections of one worker process."""

    settings: Settings
    keys: Keyspace
    redis: redis.Redis
    store: ProgressStore
    engine: Engine
    jobs: JobRepository
    videos: VideoRepository

    @classmethod
    def create(cls, settings: Settings) -> WorkerContext:
        """A context with its own connections (a worker process's, the reaper's, a test's)."""
        keys = Keyspace.from_settings(settings)
        client = sync_redis(settings)
        engine = create_db_engine(settings.resolved_database_url)
        return cls(
            settings,
            keys,
            client,
            ProgressStore(client, keys),
            engine,
            JobRepository(engine),
            VideoRepository(engine),
        )

    def records(self, kind: JobKind) -> RecordRepository[Any]:
        """The table that holds records of ``kind``."""
        return self.videos if kind is JobKind.VIDEO else self.jobs

    def close(self) -> None:
        """Close the connections."""
        self.redis.close()
        self.engine.dispose()


_contexts: dict[tuple[int, int], WorkerContext] = {}


def worker_context(app: Any) -> WorkerContext:
    """The context of ``app`` in this process (a forked child makes its own connections)."""
    key = (id(app), os.getpid())
    context = _contexts.get(key)
    if context is None:
        context = WorkerContext.create(app.conf.jobpulse_settings)
        _contexts[key] = context
    return context
