"""``/progress/``: progress across resources. Redis only, like every progress endpoint: no SQL."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from starlette.responses import Response

from jobpulse.api.deps import Owner, ServicesDep
from jobpulse.api.layer import BATCH_LIMIT
from jobpulse.api.limits import read_body

__all__ = ["router"]

router = APIRouter(prefix="/progress", tags=["progress"])


class BatchRequest(BaseModel):
    """The ids to read: 1 to 500, any kind; duplicates are answered once."""

    ids: Annotated[list[str], Field(min_length=1, max_length=BATCH_LIMIT)]


@router.post(
    "/batch/",
    summary="Progress of many jobs in one call (Redis only; UNKNOWN for ids the caller cannot see)",
    # The body is read by the handler (after the token is checked), so it is declared here for OpenAPI.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": BatchRequest.model_json_schema()}},
        }
    },
)
async def batch_progress(request: Request, services: ServicesDep, owner: Owner) -> Response:
    # The token first (the Owner dependency), then a bounded read, then the parse: a caller without a
    # token makes the API read nothing, and no caller makes it hold more than the JSON body limit.
    raw = await read_body(request, services.settings.max_json_body_bytes)
    try:
        batch = BatchRequest.model_validate_json(raw)
    except ValidationError as exc:  # answered like FastAPI's own body errors: 400 not JSON, 422 wrong shape
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        raise RequestValidationError(errors, body=None) from None
    body = await services.progress.batch(owner, batch.ids)
    return Response(body, media_type="application/json", headers={"cache-control": "private, no-cache"})
