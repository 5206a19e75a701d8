"""Request body limits for every route, enforced at the ASGI level, before FastAPI sees the request.

A declared ``Content-Length`` over the route's limit is answered 413 before any body byte is read; a body
without one (chunked) is counted while it is received and cut off with 413 once it passes the limit.
Upload routes allow their largest file plus the form's other parts (each of those bounded too, see
:mod:`jobpulse.api.uploads`); every other route allows ``max_json_body_bytes``. Routes that read a JSON
body read it through :func:`read_body`, bounded again, so no route depends on the layer alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from jobpulse.errors import InvalidRequest, PayloadTooLarge
from jobpulse.kinds import KindRegistry, Upload
from jobpulse.settings import Settings

__all__ = [
    "PART_HEADERS_BYTES",
    "BodyLimits",
    "CountedReceive",
    "declared_length",
    "in_words",
    "read_body",
    "too_large",
]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]

# The headers of one part of an upload form (Content-Disposition, Content-Type), like a server's limit on
# a request's headers: a browser sends a few hundred bytes.
PART_HEADERS_BYTES = 8 * 1024
# Boundaries, the file part's headers and line breaks of a form, besides its plain fields.
_FORM_FRAMING_BYTES = 64 * 1024
_MAX_LENGTH_DIGITS = 19  # a Content-Length longer than this is not a length any client means


def in_words(size: int) -> str:
    """A size limit as users read it ("100 MB", "64 KB")."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.0f} MB"
    return f"{max(1, size // 1024)} KB"


def too_large(limit: int) -> PayloadTooLarge:
    """The error for a body over ``limit`` bytes."""
    return PayloadTooLarge(f"The request body is larger than the limit of {in_words(limit)}.")


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """The body limit of each route, from settings."""

    json_bytes: int  # every route but the uploads
    uploads: dict[str, int]  # POST path (without its trailing slash) -> bytes of a multipart form

    @classmethod
    def from_settings(cls, settings: Settings, kinds: KindRegistry) -> BodyLimits:
        """The JSON limit, and for each resource the largest upload of its kinds plus the form."""
        form = settings.max_form_fields * (settings.max_form_field_bytes + PART_HEADERS_BYTES)
        form += _FORM_FRAMING_BYTES
        uploads: dict[str, int] = {}
        for kind in kinds:
            if isinstance(kind.input, Upload):
                limit = kind.input.limit(settings) + form
                uploads[kind.prefix] = max(uploads.get(kind.prefix, 0), limit)
        return cls(json_bytes=settings.max_json_body_bytes, uploads=uploads)

    def for_request(self, method: str, path: str, content_type: bytes | None) -> int:
        """The limit of a request's body: an upload form's on the upload routes, else the JSON limit."""
        if method == "POST" and content_type is not None and content_type.startswith(b"multipart/"):
            upload = self.uploads.get(path.rstrip("/"))
            if upload is not None:
                return upload
        return self.json_bytes


def declared_length(value: bytes) -> int:
    """A ``Content-Length`` header's value, or 400 when it is not a length (ASCII digits)."""
    if not value or len(value) > _MAX_LENGTH_DIGITS or not value.isdigit():  # bytes.isdigit: ASCII only
        raise InvalidRequest("The Content-Length header is not valid.", code="invalid_content_length")
    return int(value)


class CountedReceive:
    """An ASGI ``receive`` that counts the body and raises 413 as soon as it passes ``limit``.

    ``exceeded`` stays set, so the layer answers 413 whatever the app made of the exception.
    """

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self.limit = limit
        self.received = 0
        self.exceeded = False

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self.exceeded = True
                raise too_large(self.limit)
        return message


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, at most ``limit`` bytes (413 past it, before reading more than that)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared_length(declared.encode("latin-1")) > limit:
        raise too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        if len(body) + len(chunk) > limit:
            raise too_large(limit)
        body += chunk
    return bytes(body)
