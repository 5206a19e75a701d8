"""The ceiling, C: the fastest bare stack this machine gets from the package registries, doing the
progress read's work and nothing else (no framework, no token, no owner check, no jobpulse code).

Served by granian (one worker, ``--loop uvloop``) with redis-py's asyncio client on hiredis and orjson:
one read of the progress record per request, and its JSON encoded per request. The record is read the
way it is stored: ``HGETALL`` of a hash (a dict of its fields is encoded), ``GET`` of a string (parsed
as JSON if it is JSON and encoded again; else split at the US separator and its parts encoded).
``GET /stack`` answers what this process runs on, checked at run time: its event loop, Redis parser
and JSON library.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
import redis.asyncio.connection

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def stack() -> dict[str, str]:
    """What this process runs on (call it in the running loop)."""
    loop = type(asyncio.get_running_loop())
    return {
        "loop": f"{loop.__module__}.{loop.__qualname__}",
        "redis_parser": redis.asyncio.connection.DefaultParser.__name__.lstrip("_"),
        "json": f"orjson {orjson.__version__}",
    }


def _encode_string(value: bytes) -> bytes:
    try:
        return orjson.dumps(orjson.loads(value))
    except orjson.JSONDecodeError:  # values packed with a separator (US, as jobpulse 0.6 stores them)
        return orjson.dumps([part.decode() for part in value.split(b"\x1f")])


def app_from_env() -> App:
    """Reads ``REDIS_URL`` and ``BENCH_PROGRESS_KEY`` (the record every request reads) at call time."""
    pool = aioredis.BlockingConnectionPool.from_url(
        os.environ["REDIS_URL"], max_connections=int(os.environ.get("BENCH_REDIS_CONNECTIONS", "256"))
    )
    client = aioredis.Redis.from_pool(pool)
    key = os.environ["BENCH_PROGRESS_KEY"]
    kind: list[bytes] = []  # the record's Redis type, asked once it exists

    async def read() -> bytes:
        if not kind:
            found = cast(bytes, await client.type(key))
            if found == b"none":
                return b"null"
            kind.append(found)
        if kind[0] == b"hash":
            fields = cast(dict[bytes, bytes], await client.hgetall(key))
            return orjson.dumps({name.decode(): value.decode() for name, value in fields.items()})
        value = cast(bytes | None, await client.get(key))
        return _encode_string(value or b"null")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/healthz":
            body = b'{"status":"ok"}'
        elif path == "/stack":
            body = orjson.dumps(stack())
        else:
            body = await read()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app
