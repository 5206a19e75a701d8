"""What a worker process needs, made lazily once per process (after Celery forks its pool)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy import Engine

from jobpulse.db.engine import create_db_engine
from jobpulse.db.models import Tracked, Video
from jobpulse.db.repository import JobRepository, RecordRepository, VideoRepository
from jobpulse.keys import Keyspace
from jobpulse.kinds import Kind, KindRegistry
from jobpulse.progress.connection import sync_redis
from jobpulse.progress.store import ProgressStore
from jobpulse.settings import Settings

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
    kinds: KindRegistry

    @classmethod
    def create(cls, settings: Settings, kinds: KindRegistry | None = None) -> WorkerContext:
        """A context with its own connections (a worker process's, the reaper's, a test's); ``kinds``
        defaults to the installed ones and those of ``settings.kind_modules``."""
        if kinds is None:
            kinds = KindRegistry.load(settings.kind_modules)
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
            kinds,
        )

    def records(self, kind: Kind) -> RecordRepository[Any]:
        """The table that holds records of ``kind``."""
        return self.videos if kind.resource == "videos" else self.jobs

    def kind_of(self, record: Tracked) -> Kind:
        """The kind of a job or video record; one this process has not loaded (a host application's,
        say) is known by its table alone."""
        name: str = record.kind  # type: ignore[attr-defined]
        kind = self.kinds.get(name)
        if kind is None:
            kind = Kind(name=name, handler=None, resource="videos" if isinstance(record, Video) else "jobs")
        return kind

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
        context = WorkerContext.create(app.conf.jobpulse_settings, app.conf.jobpulse_kinds)
        _contexts[key] = context
    return context
