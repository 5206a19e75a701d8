"""Liveness, readiness and metrics: no authentication, for load balancers and Prometheus."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import text
from starlette.responses import PlainTextResponse, Response

from jobpulse.api.deps import ServicesDep
from jobpulse.api.responses import json_response

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get("/readyz", summary="Redis and the database answer")
async def readyz(services: ServicesDep) -> Response:
    checks: dict[str, str] = {}
    try:
        await services.store.client.ping()
        checks["redis"] = "ok"
    except Exception:  # any failure means not ready; the body says which
        checks["redis"] = "unreachable"

    def ping_db() -> None:
        with services.jobs.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    try:
        await run_in_threadpool(ping_db)
        checks["database"] = "ok"
    except Exception:
        checks["database"] = "unreachable"
    ready = all(value == "ok" for value in checks.values())
    headers = None if ready else {"retry-after": "2"}
    return json_response(
        {"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503, headers
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics (text format)",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    response_class=PlainTextResponse,
)
async def metrics(services: ServicesDep) -> Response:
    return Response(services.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
