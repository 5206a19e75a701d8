"""``create_app(settings)``: the ASGI application. Servers load it through :func:`app_from_env`."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import redis.asyncio.connection
from fastapi import Depends, FastAPI
from sqlalchemy import Engine, event

from jobpulse import __version__
from jobpulse.api.deps import Services, track_route
from jobpulse.api.handlers import install_error_handlers
from jobpulse.api.layer import ProgressEndpoint, ProgressLayer
from jobpulse.api.limits import BodyLimits
from jobpulse.api.metrics import Metrics, multiprocess_mode
from jobpulse.api.openapi import document_kinds
from jobpulse.api.ratelimit import SubmissionLimiter
from jobpulse.api.routes import batch, health, jobs, videos
from jobpulse.api.routes import kinds as kinds_routes
from jobpulse.auth import TokenVerifier
from jobpulse.broker import create_celery
from jobpulse.db.engine import StatementCounter, create_db_engine, current_route
from jobpulse.db.repository import JobRepository, VideoRepository
from jobpulse.keys import Keyspace
from jobpulse.kinds import KindRegistry
from jobpulse.progress.connection import async_redis
from jobpulse.progress.record import PollPolicy
from jobpulse.progress.store import AsyncProgressStore
from jobpulse.settings import Settings

__all__ = ["app_from_env", "create_app", "runtime_stack"]


def runtime_stack() -> str:
    """What this server process runs on, checked now: its event loop, Redis parser and JSON library,
    and whether its metrics are shared across processes. Call it inside the running loop."""
    loop = type(asyncio.get_running_loop())
    parser = redis.asyncio.connection.DefaultParser.__name__.lstrip("_")
    metrics = "multiprocess" if multiprocess_mode() else "this process"
    return (
        f"pid {os.getpid()}: event loop {loop.__module__}.{loop.__qualname__}, Redis parser {parser}, "
        f"JSON orjson {orjson.__version__}, metrics {metrics}"
    )


def _count_statements(engine: Engine, metrics: Metrics) -> None:
    def count(*_args: Any, **_kwargs: Any) -> None:
        metrics.count_statement(current_route.get())

    event.listen(engine, "before_cursor_execute", count)


def create_app(settings: Settings, kinds: KindRegistry | None = None) -> Any:
    """The API: FastAPI behind the progress layer, sharing one set of services.

    ``kinds`` defaults to the installed kinds and those of ``settings.kind_modules`` (their declarations
    only: the API never imports a handler). Builds clients but opens no connection: Redis and the
    database are first reached by a request.
    """
    if kinds is None:
        kinds = KindRegistry.load(settings.kind_modules)
    statements = StatementCounter()
    engine = create_db_engine(settings.resolved_database_url, counter=statements)
    store = AsyncProgressStore(async_redis(settings), Keyspace.from_settings(settings))
    verifier = TokenVerifier(
        settings.require_secret_key(),
        cache_seconds=settings.token_cache_seconds,
        cache_size=settings.token_cache_size,
    )
    policy = PollPolicy.from_settings(settings)
    metrics = Metrics()
    _count_statements(engine, metrics)
    services = Services(
        settings=settings,
        store=store,
        jobs=JobRepository(engine),
        videos=VideoRepository(engine),
        verifier=verifier,
        policy=policy,
        metrics=metrics,
        statements=statements,
        progress=ProgressEndpoint(store, verifier, policy, kinds),
        kinds=kinds,
        celery=create_celery(settings, kinds),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # One line per server process, so that what it runs on is seen, not assumed.
        print(f"jobpulse api {runtime_stack()}", file=sys.stderr, flush=True)
        yield
        await services.aclose()

    api = FastAPI(
        title="jobpulse",
        version=__version__,
        lifespan=lifespan,
        dependencies=[Depends(track_route)],
        redirect_slashes=True,
    )
    api.state.services = services
    api.state.limiter = SubmissionLimiter(store.client, store.keys, settings.submit_rate_per_minute)
    install_error_handlers(api)
    api.include_router(jobs.router)
    api.include_router(videos.router)
    api.include_router(batch.router)
    api.include_router(kinds_routes.router)
    api.include_router(health.router)
    document_kinds(api, kinds)
    return ProgressLayer(api, services.progress, metrics, BodyLimits.from_settings(settings, kinds))


def app_from_env() -> Any:
    """The app with settings from the environment (``granian --factory``, ``uvicorn --factory``)."""
    app = create_app(Settings())
    # The app's long-lived objects need no collecting: keep them out of the collector's full passes,
    # which otherwise walk the whole framework on the request path.
    gc.freeze()
    return app
