"""Response helpers shared by the routers."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

__all__ = ["json_response"]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``body`` serialized with orjson (datetimes, UUIDs and all)."""
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)
