"""The per-owner submission rate limit: at most ``submit_rate_per_minute`` submissions an owner per
window of a minute, counted in Redis (one Lua script, atomic across API processes).

It is checked as a dependency of the submission routes, after the token and before the upload's body
is read: a refused submission costs one Redis call, never the upload's bytes.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import redis.asyncio as aioredis
from fastapi import Depends, Request

from jobpulse.api.deps import Owner
from jobpulse.errors import RateLimited
from jobpulse.keys import Keyspace
from jobpulse.progress.lua import lua_source
from jobpulse.progress.store import redis_errors

__all__ = ["SubmissionLimiter", "SubmittingOwner", "submitting_owner"]

WINDOW_MS = 60_000


class SubmissionLimiter:
    """Admits an owner's submission, or raises :class:`RateLimited` with the seconds left in the window."""

    def __init__(self, client: aioredis.Redis, keys: Keyspace, per_minute: int) -> None:
        self.per_minute = per_minute  # 0: no limit
        self._keys = keys
        self._script = client.register_script(lua_source("rate_limit.lua"))

    async def admit(self, owner: str) -> None:
        """Count one submission of ``owner``; 429 when the owner's window is full, 503 without Redis."""
        if not self.per_minute:
            return
        with redis_errors():
            reply: Any = await self._script(keys=[self._keys.rate(owner)], args=[self.per_minute, WINDOW_MS])
        admitted, left_ms = int(reply[0]), int(reply[1])
        if not admitted:
            seconds = max(1, math.ceil(left_ms / 1000))
            raise RateLimited(
                f"Too many submissions: at most {self.per_minute} a minute. Try again in {seconds} s.",
                retry_after=seconds,
            )


async def submitting_owner(request: Request, owner: Owner) -> str:
    """The caller's owner id, once the rate limit admits this submission."""
    limiter: SubmissionLimiter = request.app.state.limiter
    await limiter.admit(owner)
    return owner


SubmittingOwner = Annotated[str, Depends(submitting_owner)]
