"""``create_app(settings)``: the ASGI application. Servers load it through :func:`app_from_env`."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI

from jobpulse import __version__
from jobpulse.api.deps import Services, track_route
from jobpulse.api.errors import install_error_handlers
from jobpulse.api.limits import BodyLimits
from jobpulse.api.metrics import Metrics
from jobpulse.api.progress import ProgressEndpoint, ProgressLayer
from jobpulse.api.ratelimit import SubmissionLimiter
from jobpulse.api.routes import health, jobs, progress, videos
from jobpulse.auth import TokenVerifier
from jobpulse.db.engine import StatementCounter, create_db_engine
from jobpulse.db.repository import JobRepository, VideoRepository
from jobpulse.keys import Keyspace
from jobpulse.progress.connection import async_redis
from jobpulse.progress.record import PollPolicy
from jobpulse.progress.store import AsyncProgressStore
from jobpulse.settings import Settings
from jobpulse.worker.app import create_celery

__all__ = ["app_from_env", "create_app"]


def create_app(settings: Settings) -> Any:
    """The API: FastAPI behind the progress layer, sharing one set of services.

    Builds clients but opens no connection: Redis and the database are first reached by a request.
    """
    statements = StatementCounter()
    engine = create_db_engine(settings.resolved_database_url, counter=statements)
    store = AsyncProgressStore(async_redis(settings), Keyspace.from_settings(settings))
    verifier = TokenVerifier(
        settings.require_secret_key(),
        cache_seconds=settings.token_cache_seconds,
        cache_size=settings.token_cache_size,
    )
    policy = PollPolicy.from_settings(settings)
    metrics = Metrics(statements)
    services = Services(
        settings=settings,
        store=store,
        jobs=JobRepository(engine),
        videos=VideoRepository(engine),
        verifier=verifier,
        policy=policy,
        metrics=metrics,
        statements=statements,
        progress=ProgressEndpoint(store, verifier, policy),
        celery=create_celery(settings, register_tasks=False),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
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
    api.include_router(progress.router)
    api.include_router(health.router)
    return ProgressLayer(api, services.progress, metrics, BodyLimits.from_settings(settings))


def app_from_env() -> Any:
    """The app with settings from the environment (``granian --factory``, ``uvicorn --factory``)."""
    app = create_app(Settings())
    # The app's long-lived objects need no collecting: keep them out of the collector's full passes,
    # which otherwise walk the whole framework on the request path.
    gc.freeze()
    return app
