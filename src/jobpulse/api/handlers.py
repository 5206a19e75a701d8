"""FastAPI's exception handlers: every exception the app can raise, database errors included, answered
with the error body of :mod:`jobpulse.api.errors`."""

from __future__ import annotations

import logging

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from jobpulse.api.errors import error_body, error_reply
from jobpulse.db.engine import DATABASE_ERRORS
from jobpulse.errors import JobpulseError

__all__ = ["CLIENT_DATABASE_ERRORS", "install_error_handlers"]

log = logging.getLogger(__name__)


_HTTP_CODES = {
    400: "invalid_request",
    401: "not_authenticated",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}

# Errors the database raises for a value it refuses (out of range, too long, a NUL in a string): they come
# from what the client sent, so they answer 400. Each input is validated before it reaches the database;
# this is the net under those checks (PostgreSQL is stricter than SQLite, and not every test runs on it).
CLIENT_DATABASE_ERRORS: tuple[type[Exception], ...] = (sqlalchemy.exc.DataError,)


def _response(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> Response:
    response = Response(body, status_code=status)
    for name, value in headers:
        response.headers[name.decode()] = value.decode()
    return response


async def _jobpulse_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, JobpulseError)
    return _response(*error_reply(exc))


async def _validation_error(_request: Request, exc: Exception) -> Response:
    """A bad query, path or header parameter, or a body that is not JSON, is a malformed request (400);
    a JSON body of the wrong shape is 422."""
    assert isinstance(exc, RequestValidationError)
    problems = []
    in_body = False
    for error in exc.errors()[:5]:
        location = error.get("loc", ())
        in_body = in_body or (
            bool(location) and location[0] == "body" and error.get("type") != "json_invalid"
        )
        where = ".".join(str(part) for part in location[1:])
        problems.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg")))
    message = "Invalid request: " + "; ".join(problems)
    status, code = (422, "invalid_options") if in_body else (400, "invalid_request")
    return Response(error_body(code, message), status_code=status, media_type="application/json")


async def _database_error(_request: Request, exc: Exception) -> Response:
    log.error("database unreachable: %r", exc)
    return Response(
        error_body("database_unavailable", "The database is unreachable; try again shortly."),
        status_code=503,
        media_type="application/json",
        headers={"retry-after": "2"},
    )


async def _refused_by_database(_request: Request, exc: Exception) -> Response:
    log.warning("the database refused a value from a request: %s", type(exc).__name__)
    return Response(
        error_body("invalid_request", "A value in the request is malformed or out of range."),
        status_code=400,
        media_type="application/json",
    )


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else "Request failed."
    response = Response(error_body(code, message), status_code=exc.status_code, media_type="application/json")
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def _unexpected(_request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return Response(
        error_body("internal_error", "Something went wrong on our side."),
        status_code=500,
        media_type="application/json",
    )


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception the app can raise to the error body."""
    app.add_exception_handler(JobpulseError, _jobpulse_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    for database_error in DATABASE_ERRORS:
        app.add_exception_handler(database_error, _database_error)
    for refused in CLIENT_DATABASE_ERRORS:
        app.add_exception_handler(refused, _refused_by_database)
    app.add_exception_handler(Exception, _unexpected)
