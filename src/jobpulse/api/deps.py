"""What the endpoints share, built once per app, and the FastAPI dependencies that hand it out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from jobpulse.api.layer import ProgressEndpoint
from jobpulse.api.metrics import Metrics
from jobpulse.auth import TokenVerifier, bearer_token, check_url_signature
from jobpulse.db.engine import StatementCounter, current_route
from jobpulse.db.models import Tracked, Video
from jobpulse.db.repository import JobRepository, RecordRepository, VideoRepository
from jobpulse.errors import InvalidOptions
from jobpulse.ids import is_job_id
from jobpulse.kinds import Kind, KindRegistry, Resource
from jobpulse.progress.record import PollPolicy
from jobpulse.progress.store import AsyncProgressStore
from jobpulse.settings import Settings

__all__ = ["Owner", "Services", "ServicesDep", "file_holder", "get_services", "track_route"]


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
    kinds: KindRegistry
    celery: Any  # celery.Celery; untyped library

    def records(self, kind: Kind) -> RecordRepository[Any]:
        """The table that holds records of ``kind``."""
        return self.videos if kind.resource == "videos" else self.jobs

    def kind_of(self, record: Tracked) -> Kind:
        """The kind of a stored record; one this deployment no longer declares (a host application's
        kind submitted from Python) is known by its table alone, so its record can still be managed."""
        name: str = record.kind  # type: ignore[attr-defined]
        kind = self.kinds.get(name)
        if kind is None:
            kind = Kind(name=name, handler=None, resource="videos" if isinstance(record, Video) else "jobs")
        return kind

    def submittable(self, name: str, resource: Resource) -> Kind:
        """The registered kind ``name`` if it is submitted on ``resource``'s routes; else 422 naming the
        kinds that are."""
        kind = self.kinds.get(name)
        if kind is not None and kind.resource == resource:
            return kind
        accepted = ", ".join(self.kinds.names(resource)) or "none"
        if kind is None:
            message = f"Unknown job kind {name!r}; expected one of: {accepted}."
        else:
            message = (
                f"Jobs of kind {name!r} are not accepted here ({kind.prefix}/ takes them); "
                f"expected one of: {accepted}."
            )
        raise InvalidOptions(message, code="invalid_kind")

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


def file_holder(
    services: Services,
    records: RecordRepository[Any],
    path: str,
    record_id: str,
    request: Request,
    expires: str | None,
    signature: str | None,
) -> Any:
    """The record whose file ``path`` names (``…/{record_id}/files/{name}``), if the request may read
    it: by a signed link for exactly that path (401 when it is forged or expired), or by its owner's
    bearer token. None for an id that names no such record."""
    if signature is not None:
        secret = services.settings.require_secret_key()
        check_url_signature(secret, path, expires or "", signature)
        return records.get(record_id) if is_job_id(record_id) else None
    owner = services.verifier.owner(bearer_token(request.headers.get("authorization")))
    return records.get(record_id, owner=owner) if is_job_id(record_id) else None


async def track_route(request: Request) -> None:
    """Attribute the SQL this request runs to its route template (async: it sets the request's context)."""
    route = request.scope.get("route")
    current_route.set(getattr(route, "path", "-"))
