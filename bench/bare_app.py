"""The ceiling: a bare ASGI app (no framework, no auth) doing the progress path's one Redis read and
returning the same bytes. Served by the same server as jobpulse so the two compare side by side."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, cast

import redis.asyncio as aioredis

from jobpulse.progress.record import PollPolicy, render_progress

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def app_from_env() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """Reads ``REDIS_URL`` and ``BENCH_KEY_PREFIX`` at call time (a server factory)."""
    # The same pool as jobpulse's (progress/connection.py), so the comparison is of everything else.
    pool = aioredis.BlockingConnectionPool.from_url(os.environ["REDIS_URL"], max_connections=256)
    client = aioredis.Redis.from_pool(pool)
    prefix = os.environ.get("BENCH_KEY_PREFIX", "jp:") + "p:"
    policy = PollPolicy()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        job_id = scope["path"].split("/")[2]
        raw = cast(dict[bytes, bytes], await client.hgetall(prefix + job_id))
        body = render_progress(job_id, raw, int(time.time() * 1000), policy)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app
