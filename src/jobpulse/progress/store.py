"""The progress store: atomic, forward-only writes through one Lua script, reads in one round trip.

:class:`ProgressStore` serves workers and the CLI (blocking); :class:`AsyncProgressStore` serves the
API. Both share the argument building and reply parsing of :class:`_StoreBase`, so they behave alike.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

import redis
import redis.asyncio as aioredis
import redis.exceptions

from jobpulse.errors import ServiceUnavailable
from jobpulse.keys import Keyspace
from jobpulse.progress.lua import lua_source
from jobpulse.progress.record import ProgressUpdate
from jobpulse.states import State, allowed_sources

__all__ = ["AsyncProgressStore", "ProgressStore", "WriteResult", "WriteStatus"]

UNREACHABLE = "Progress storage is unreachable; try again shortly."
Raw = dict[bytes, bytes]  # a record as HGETALL returns it (the clients do not decode)
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


@cache
def _sources_arg(state: State) -> str:
    return " ".join(sorted(source.value for source in allowed_sources(state)))


class WriteStatus(enum.IntEnum):
    """What the Lua script did with a write."""

    ACCEPTED = 1  # applied; version bumped and published
    DUPLICATE = 0  # nothing changed; dropped
    ILLEGAL = -1  # the record's state does not allow it (e.g. it is terminal)
    STALE = -2  # percent would decrease within the state
    EXISTS = -3  # a create found a record already there


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The outcome of a write, and the record's version and state after it."""

    status: WriteStatus
    version: int
    state: State

    @property
    def accepted(self) -> bool:
        return self.status is WriteStatus.ACCEPTED


@contextmanager
def redis_errors() -> Iterator[None]:
    """Turn connection failures into :class:`ServiceUnavailable` (HTTP 503)."""
    try:
        yield
    except REDIS_ERRORS as exc:
        raise ServiceUnavailable(UNREACHABLE) from exc


class _StoreBase:
    def __init__(self, keys: Keyspace) -> None:
        self.keys = keys

    def _write_args(
        self, job_id: str, update: ProgressUpdate, *, owner: str, kind: str, create: bool
    ) -> tuple[list[str], list[str]]:
        state = update.state
        argv = [
            state.value,
            _sources_arg(state),
            "create" if create else "upsert",
            "1" if state.terminal else "0",
            str(self.keys.active_ttl_ms),
            str(self.keys.terminal_ttl_ms),
            self.keys.events(job_id),
            "owner",
            owner,
            "kind",
            kind,
            *update.fields(),
        ]
        return [self.keys.progress(job_id)], argv

    @staticmethod
    def _result(reply: Any) -> WriteResult:
        status, version, state = reply
        if isinstance(state, bytes):
            state = state.decode()
        return WriteResult(WriteStatus(int(status)), int(version), State(state))

    @staticmethod
    def _record(raw: dict[bytes, bytes]) -> dict[bytes, bytes] | None:
        return raw if raw and b"state" in raw else None


class ProgressStore(_StoreBase):
    """Blocking progress store, for workers and tools."""

    def __init__(self, client: redis.Redis, keys: Keyspace) -> None:
        super().__init__(keys)
        self.client = client
        self._script = client.register_script(lua_source("write_progress.lua"))

    def write(
        self, job_id: str, update: ProgressUpdate, *, owner: str, kind: str, create: bool = False
    ) -> WriteResult:
        """Apply ``update`` if the state rules allow it; ``create`` only writes a new record."""
        keys, argv = self._write_args(job_id, update, owner=owner, kind=kind, create=create)
        with redis_errors():
            return self._result(self._script(keys=keys, args=argv))

    def read(self, job_id: str) -> dict[bytes, bytes] | None:
        """The raw record, or None when there is none."""
        with redis_errors():
            return self._record(cast(Raw, self.client.hgetall(self.keys.progress(job_id))))

    def state(self, job_id: str) -> State | None:
        """The record's state alone (one ``HGET``), or None when there is no record."""
        with redis_errors():
            raw = cast(bytes | None, self.client.hget(self.keys.progress(job_id), "state"))
        return None if raw is None else State(raw.decode())

    def delete(self, job_id: str) -> None:
        """Remove the record (a submission that could not be queued)."""
        with redis_errors():
            self.client.delete(self.keys.progress(job_id))


class AsyncProgressStore(_StoreBase):
    """Progress store for the API's event loop."""

    def __init__(self, client: aioredis.Redis, keys: Keyspace) -> None:
        super().__init__(keys)
        self.client = client
        self._script = client.register_script(lua_source("write_progress.lua"))

    async def write(
        self, job_id: str, update: ProgressUpdate, *, owner: str, kind: str, create: bool = False
    ) -> WriteResult:
        """Apply ``update`` if the state rules allow it; ``create`` only writes a new record."""
        keys, argv = self._write_args(job_id, update, owner=owner, kind=kind, create=create)
        with redis_errors():
            return self._result(await self._script(keys=keys, args=argv))

    async def read(self, job_id: str) -> dict[bytes, bytes] | None:
        """The raw record, or None when there is none. (On every poll: no context manager here.)"""
        try:
            raw = await self.client.hgetall(self.keys.progress(job_id))
        except REDIS_ERRORS as exc:
            raise ServiceUnavailable(UNREACHABLE) from exc
        return self._record(cast(Raw, raw))

    async def read_many(self, job_ids: list[str]) -> list[dict[bytes, bytes] | None]:
        """Raw records of many ids, in one round trip (a pipeline)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(self.keys.progress(job_id))
            with redis_errors():
                replies = await pipe.execute()
        return [self._record(reply) for reply in replies]

    async def delete(self, job_id: str) -> None:
        """Remove the record (a submission that could not be queued)."""
        with redis_errors():
            await self.client.delete(self.keys.progress(job_id))
