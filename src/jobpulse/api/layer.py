"""The progress read path: Redis only, zero SQL, and lean enough to run near a bare ASGI app's speed.

:class:`ProgressEndpoint` answers a progress request from one ``GET`` of the record, whose body was
rendered when the worker wrote it (:mod:`jobpulse.progress.layout`); :class:`ProgressLayer` is a
small ASGI layer in front of FastAPI that serves the progress routes with it directly, because the
framework's per-request machinery costs more than the work itself (docs/architecture.md has the numbers).
FastAPI declares the same routes (for OpenAPI) and calls the same endpoint, so both paths answer alike.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import Response

from jobpulse.api.errors import error_reply
from jobpulse.api.limits import BodyLimits, CountedReceive, declared_length, too_large
from jobpulse.api.metrics import Metrics
from jobpulse.auth import TokenVerifier
from jobpulse.errors import InvalidRequest, JobpulseError
from jobpulse.ids import is_job_id
from jobpulse.kinds import KindRegistry
from jobpulse.progress.layout import PARTS, SEP, Hints, render
from jobpulse.progress.record import PollPolicy, render_unknown
from jobpulse.progress.store import AsyncProgressStore

__all__ = ["BATCH_LIMIT", "ProgressEndpoint", "ProgressLayer", "Reply"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BATCH_LIMIT = 500  # ids per batch request (the contract's limit)

_JSON = (b"content-type", b"application/json")
_NO_CACHE = (b"cache-control", b"private, no-cache")
_COMMON = [_JSON, _NO_CACHE]


class Reply(NamedTuple):
    """A complete HTTP answer (a tuple: built on every poll)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def _etag_matches(if_none_match: bytes, etag: bytes) -> bool:
    for candidate in if_none_match.split(b","):
        candidate = candidate.strip()
        if candidate.startswith(b"W/"):
            candidate = candidate[2:]
        if candidate in (etag, b"*"):
            return True
    return False


class ProgressEndpoint:
    """Answers ``GET .../{id}/progress/`` for the caller: their record, or UNKNOWN.

    A record is served on its resource's routes only: a video's on ``/media/videos/``, every other
    kind's on ``/jobs/``, including kinds this process does not declare (a host application's).
    """

    def __init__(
        self, store: AsyncProgressStore, verifier: TokenVerifier, policy: PollPolicy, kinds: KindRegistry
    ) -> None:
        self.store = store
        self.verifier = verifier
        self.policy = policy
        self.video_kinds = frozenset(orjson.dumps(name) for name in kinds.names("videos"))  # as stored
        self.hints = Hints(policy)

    async def reply(
        self, job_id: str, authorization: bytes | None, if_none_match: bytes | None, videos: bool
    ) -> Reply:
        try:
            owner = self.verifier.owner_of_header(authorization)
            value = await self.store.read_stored(job_id) if is_job_id(job_id) else None
        except JobpulseError as exc:
            return Reply(*error_reply(exc))
        if value is None:
            return Reply(200, _COMMON, render_unknown(job_id, self.policy))
        parts = value.split(SEP)
        if len(parts) != PARTS or parts[1] != owner or (parts[4] in self.video_kinds) is not videos:
            return Reply(200, _COMMON, render_unknown(job_id, self.policy))
        etag = b'"' + parts[0] + b'"'
        if if_none_match is not None and _etag_matches(if_none_match, etag):
            return Reply(304, [(b"etag", etag), (b"cache-control", b"private, no-cache")], b"")
        body = render(job_id.encode(), parts, self.hints.hint(parts[3], parts[2]))
        return Reply(200, [_JSON, _NO_CACHE, (b"etag", etag), (b"content-length", b"%d" % len(body))], body)

    async def response(self, request: Request, job_id: str, *, videos: bool) -> Response:
        """The same answer for FastAPI's progress routes, which serve it when the layer is not in front
        (they exist mostly to document the routes in OpenAPI)."""
        authorization = request.headers.get("authorization")
        if_none_match = request.headers.get("if-none-match")
        reply = await self.reply(
            job_id.lower(),
            authorization.encode() if authorization else None,
            if_none_match.encode() if if_none_match else None,
            videos,
        )
        return Response(reply.body, reply.status, headers={k.decode(): v.decode() for k, v in reply.headers})

    async def batch(self, owner: str, job_ids: list[str]) -> bytes:
        """``{"items": {id: progress}}`` for many ids of any kind, from one Redis round trip.

        Items are keyed by the id as sent (duplicates answered once); malformed, missing and other
        owners' ids are UNKNOWN.
        """
        wanted = {job_id: job_id.lower() for job_id in job_ids}
        valid = sorted({normal for normal in wanted.values() if is_job_id(normal)})
        records = dict(zip(valid, await self.store.read_many(valid), strict=True)) if valid else {}
        now_ms = int(time.time() * 1000)
        owner_bytes = owner.encode()
        hint = self.hints.hint
        items: list[bytes] = []
        for sent, normal in wanted.items():
            value = records.get(normal)
            parts = value.split(SEP) if value is not None else None
            if parts is not None and len(parts) == PARTS and parts[1] == owner_bytes:
                body = render(normal.encode(), parts, hint(parts[3], parts[2], now_ms))
            else:
                body = render_unknown(normal, self.policy)
            items.append(orjson.dumps(sent) + b":" + body)
        return b'{"items":{' + b",".join(items) + b"}}"


# /jobs/{id}/progress/ and /media/videos/{id}/progress/ (the trailing slash is optional).
_ROUTES = [
    (re.compile(r"/jobs/([^/]+)/progress/?"), "/jobs/{job_id}/progress/", False),
    (re.compile(r"/media/videos/([^/]+)/progress/?"), "/media/videos/{video_id}/progress/", True),
]


class ProgressLayer:
    """ASGI layer: serves the progress routes itself, hands everything else to ``app``, counts both.

    It is also where every request's body limit is enforced (:mod:`jobpulse.api.limits`), and where the
    slash redirect is made relative (FastAPI builds its ``Location`` from the request's ``Host``).
    """

    def __init__(
        self, app: ASGIApp, endpoint: ProgressEndpoint, metrics: Metrics, limits: BodyLimits
    ) -> None:
        self.app = app
        self.endpoint = endpoint
        self.metrics = metrics
        self.limits = limits
        self.state: Any = getattr(app, "state", None)  # the wrapped app's state (services live there)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        path = scope["path"]
        if method in ("GET", "HEAD") and "/progress" in path:
            # First, on the hot path: a progress answer never reads the request's body.
            for pattern, template, videos in _ROUTES:
                match = pattern.fullmatch(path)
                if match:
                    await self._progress(scope, send, match.group(1).lower(), template, videos)
                    return
        length = content_type = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"content-type":
                content_type = value
        limit = self.limits.for_request(method, path, content_type)
        if length is not None:
            try:
                if declared_length(length) > limit:
                    raise too_large(limit)
            except InvalidRequest as exc:  # answered before any byte of the body is read
                await _send_reply(send, Reply(*error_reply(exc)), close=True)
                self.metrics.count_request(method, "unmatched", exc.http_status)
                return
        await self._forward(scope, CountedReceive(receive, limit), send)

    async def _forward(self, scope: Scope, receive: CountedReceive, send: Send) -> None:
        """Hand the request to the app, with its body counted; a body past its limit answers 413."""
        status = 500
        started = replaced = False

        async def guarded_send(message: Message) -> None:
            nonlocal status, started, replaced
            if replaced:
                return
            if message["type"] == "http.response.start":
                started = True
                if receive.exceeded:  # whatever the app answered, the answer is 413
                    replaced = True
                    status = 413
                    await _send_reply(send, Reply(*error_reply(too_large(receive.limit))), close=True)
                    return
                status = message["status"]
                if status in (307, 308) and scope.get("route") is None:  # the router's slash redirect
                    message["headers"] = _relative_location(message["headers"])
            await send(message)

        try:
            await self.app(scope, receive, guarded_send)
        except Exception:
            if not receive.exceeded:
                raise
            if not started:
                status = 413
                await _send_reply(send, Reply(*error_reply(too_large(receive.limit))), close=True)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.count_request(scope["method"], route, status)

    async def _progress(self, scope: Scope, send: Send, job_id: str, template: str, videos: bool) -> None:
        authorization = if_none_match = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"if-none-match":
                if_none_match = value
        reply = await self.endpoint.reply(job_id, authorization, if_none_match, videos)
        await _send_reply(send, reply, head=scope["method"] == "HEAD")
        self.metrics.count_request(scope["method"], template, reply.status)


async def _send_reply(send: Send, reply: Reply, *, head: bool = False, close: bool = False) -> None:
    headers = reply.headers
    if reply.body and headers[-1][0] != b"content-length":  # a progress answer brings its own
        headers = [*headers, (b"content-length", b"%d" % len(reply.body))]
    if close:  # the body was not read: the connection cannot carry another request
        headers = [*headers, (b"connection", b"close")]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else reply.body})


def _relative_location(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The headers with ``Location`` cut to its path and query: never a host taken from the request.

    Leading slashes and backslashes collapse to one slash, so the path cannot read as ``//host``.
    """
    fixed = []
    for name, value in headers:
        if name.lower() == b"location":
            parts = urlsplit(value.decode("latin-1"))
            location = "/" + parts.path.lstrip("/\\")
            if parts.query:
                location += "?" + parts.query
            value = location.encode("latin-1")
        fixed.append((name, value))
    return fixed
