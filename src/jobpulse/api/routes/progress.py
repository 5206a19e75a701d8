"""``/progress/``: progress across resources. Redis only, like every progress endpoint: no SQL."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.responses import Response

from jobpulse.api.deps import Owner, ServicesDep
from jobpulse.api.progress import BATCH_LIMIT

__all__ = ["router"]

router = APIRouter(prefix="/progress", tags=["progress"])


class BatchRequest(BaseModel):
    """The ids to read: 1 to 500, any kind; duplicates are answered once."""

    ids: Annotated[list[str], Field(min_length=1, max_length=BATCH_LIMIT)]


@router.post(
    "/batch/",
    summary="Progress of many jobs in one call (Redis only; UNKNOWN for ids the caller cannot see)",
)
async def batch_progress(request: BatchRequest, services: ServicesDep, owner: Owner) -> Response:
    body = await services.progress.batch(owner, request.ids)
    return Response(body, media_type="application/json", headers={"cache-control": "private, no-cache"})
