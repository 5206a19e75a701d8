"""``/kinds/``: the job kinds this deployment accepts and what each takes. No SQL."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from jobpulse.api.deps import Owner, ServicesDep
from jobpulse.api.responses import json_response

__all__ = ["router"]

router = APIRouter(prefix="/kinds", tags=["kinds"])


@router.get("/", summary="The job kinds this deployment accepts: resource, input, options, result")
def list_kinds(services: ServicesDep, _owner: Owner) -> Response:
    """``{"items": [...]}``, sorted by name: what a client needs to submit each kind (the SDK's and
    CLI's kind lists read it)."""
    items = [kind.describe(services.settings) for kind in sorted(services.kinds, key=lambda k: k.name)]
    return json_response({"items": items})
