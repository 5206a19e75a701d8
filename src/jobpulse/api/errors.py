"""Exceptions to HTTP answers, in one place. Every error body is
``{"error": {"code": "snake_case", "message": "human text"}}``; nothing a client sends yields a 500, and
no answer carries a traceback or a file path.

This module is on the progress read path, so it imports neither the database nor the framework: the
FastAPI handlers, which also map database errors, are in :mod:`jobpulse.api.handlers`.
"""

from __future__ import annotations

import logging

import orjson

from jobpulse.errors import AuthenticationError, JobpulseError, RateLimited, ServiceUnavailable

__all__ = ["error_body", "error_reply", "status_of"]

log = logging.getLogger(__name__)


def status_of(exc: JobpulseError) -> int:
    """The HTTP status of a jobpulse exception (each class names its own)."""
    return exc.http_status


def error_body(code: str, message: str) -> bytes:
    """The JSON error body."""
    return orjson.dumps({"error": {"code": code, "message": message}})


def error_reply(exc: JobpulseError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body for ``exc``; shared by FastAPI's handlers and the progress layer."""
    status = status_of(exc)
    headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
    if isinstance(exc, ServiceUnavailable | RateLimited):
        headers.append((b"retry-after", str(exc.retry_after).encode()))
    elif isinstance(exc, AuthenticationError):
        headers.append((b"www-authenticate", b"Bearer"))
    if status == 500:
        log.error("unmapped jobpulse error: %r", exc)
        return 500, headers, error_body("internal_error", "Something went wrong on our side.")
    return status, headers, error_body(exc.code, exc.message)
