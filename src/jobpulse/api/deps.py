"""What the endpoints share, built once per app, and the FastAPI dependencies that hand it out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from jobpulse.api.metrics import Metrics
from jobpulse.api.progress import ProgressEndpoint
from jobpulse.auth import TokenVerifier, bearer_token
from jobpulse.db.engine import StatementCounter, current_route
from jobpulse.db.repository import JobRepository, RecordRepository, VideoRepository
from jobpulse.progress.record import PollPolicy
from jobpulse.progress.store import AsyncProgressStore
from jobpulse.settings import Settings
from jobpulse.states import JobKind

__all__ = ["Owner", "Services", "ServicesDep", "get_services", "track_route"]


@dataclass
class Services:
    """Everything a request may need; one instance per app."""

    settings: Settings
    store: AsyncProgressStore
    jobs: JobRepository
    videos: VideoRepository
    verifier: TokenVerifier
    policy: PollPolicy
    metrics: Metrics
    statements: StatementCounter
    progress: ProgressEndpoint
    celery: Any  # celery.Celery; untyped library

    def records(self, kind: JobKind) -> RecordRepository[Any]:
        """The table that holds records of ``kind``."""
        return self.videos if kind is JobKind.VIDEO else self.jobs

    async def aclose(self) -> None:
        """Close every connection pool (the app's lifespan calls this on shutdown)."""
        await self.store.client.aclose()
        self.jobs.engine.dispose()
        self.celery.close()


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def current_owner(request: Request, services: ServicesDep) -> str:
    """The owner id of the request's bearer token, or 401."""
    return services.verifier.owner(bearer_token(request.headers.get("authorization")))


Owner = Annotated[str, Depends(current_owner)]


async def track_route(request: Request) -> None:
    """Attribute the SQL this request runs to its route template (async: it sets the request's context)."""
    route = request.scope.get("route")
    current_route.set(getattr(route, "path", "-"))
