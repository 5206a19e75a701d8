"""Redis clients built from settings: a blocking pool, so load waits for a connection instead of failing."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis

from jobpulse.settings import Settings

__all__ = ["async_redis", "sync_redis"]


def _pool_options(settings: Settings) -> dict[str, Any]:
    return {
        "max_connections": settings.redis_max_connections,
        "timeout": settings.redis_timeout_seconds,  # the longest wait for a free connection
        "socket_timeout": settings.redis_timeout_seconds,
        "socket_connect_timeout": settings.redis_timeout_seconds,
    }


def sync_redis(settings: Settings) -> redis.Redis:
    """A client for workers and the CLI."""
    pool = redis.BlockingConnectionPool.from_url(settings.require_redis_url(), **_pool_options(settings))
    return redis.Redis.from_pool(pool)


def async_redis(settings: Settings) -> aioredis.Redis:
    """A client for the API's event loop."""
    pool = aioredis.BlockingConnectionPool.from_url(settings.require_redis_url(), **_pool_options(settings))
    return aioredis.Redis.from_pool(pool)
