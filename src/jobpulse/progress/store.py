"""The progress store: atomic, forward-only writes through one Lua script, reads in one round trip.

:class:`ProgressStore` serves workers and the CLI (blocking); :class:`AsyncProgressStore` serves the
API. Both share the argument building and reply parsing of :class:`_StoreBase`, so they behave alike.
A record is one string with its body pre-rendered (:mod:`jobpulse.progress.layout`): ``read`` gives
the field dict, ``read_stored`` the stored bytes for the poll path.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

import orjson
import redis
import redis.asyncio as aioredis
import redis.exceptions

from jobpulse.errors import ServiceUnavailable
from jobpulse.keys import Keyspace
from jobpulse.progress import layout
from jobpulse.progress.lua import lua_source
from jobpulse.progress.record import ProgressUpdate, number_text
from jobpulse.states import State, allowed_sources

__all__ = ["AsyncProgressStore", "ProgressStore", "WriteResult", "WriteStatus"]

UNREACHABLE = "Progress storage is unreachable; try again shortly."
Raw = dict[bytes, bytes]  # a record's field dict (the clients do not decode)
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
_WRITE_SCRIPT = "iso_ms.lua", "write_progress.lua"


def _write_source() -> str:
    return "\n".join(lua_source(name) for name in _WRITE_SCRIPT)


def _wrong_type(exc: redis.exceptions.ResponseError) -> bool:
    """A command for strings met a hash record of jobpulse < 0.6."""
    return str(exc).startswith("WRONGTYPE")


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
        layout.check_names(owner, kind)
        argv: list[Any] = [
            state.value,
            _sources_arg(state),
            "create" if create else "upsert",
            "1" if state.terminal else "0",
            self.keys.active_ttl_ms,
            self.keys.terminal_ttl_ms,
            self.keys.events(job_id),
            owner,
            "" if update.percent is None else number_text(update.percent),
            layout.content(kind, update),
            orjson.dumps(job_id),
        ]
        return [self.keys.progress(job_id)], argv

    @staticmethod
    def _result(reply: Any) -> WriteResult:
        status, version, state = reply
        if isinstance(state, bytes):
            state = state.decode()
        return WriteResult(WriteStatus(int(status)), int(version), State(state))

    @staticmethod
    def _record(value: bytes | None) -> dict[bytes, bytes] | None:
        return None if value is None else layout.fields(value)

    @staticmethod
    def _legacy(raw: Raw) -> dict[bytes, bytes] | None:
        return raw if raw and b"state" in raw else None


class ProgressStore(_StoreBase):
    """Blocking progress store, for workers and tools."""

    def __init__(self, client: redis.Redis, keys: Keyspace) -> None:
        super().__init__(keys)
        self.client = client
        self._script = client.register_script(_write_source())

    def write(
        self, job_id: str, update: ProgressUpdate, *, owner: str, kind: str, create: bool = False
    ) -> WriteResult:
        """Apply ``update`` if the state rules allow it; ``create`` only writes a new record."""
        keys, argv = self._write_args(job_id, update, owner=owner, kind=kind, create=create)
        with redis_errors():
            return self._result(self._script(keys=keys, args=argv))

    def read(self, job_id: str) -> dict[bytes, bytes] | None:
        """The record's field dict, or None when there is none."""
        key = self.keys.progress(job_id)
        with redis_errors():
            try:
                return self._record(cast(bytes | None, self.client.get(key)))
            except redis.exceptions.ResponseError as exc:
                if not _wrong_type(exc):
                    raise
                return self._legacy(cast(Raw, self.client.hgetall(key)))

    def state(self, job_id: str) -> State | None:
        """The record's state alone (one ``GET``), or None when there is no record."""
        key = self.keys.progress(job_id)
        with redis_errors():
            try:
                value = cast(bytes | None, self.client.get(key))
                raw = None if value is None else layout.state_of(value)
            except redis.exceptions.ResponseError as exc:
                if not _wrong_type(exc):
                    raise
                raw = cast(bytes | None, self.client.hget(key, "state"))
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
        self._script = client.register_script(_write_source())

    async def write(
        self, job_id: str, update: ProgressUpdate, *, owner: str, kind: str, create: bool = False
    ) -> WriteResult:
        """Apply ``update`` if the state rules allow it; ``create`` only writes a new record."""
        keys, argv = self._write_args(job_id, update, owner=owner, kind=kind, create=create)
        with redis_errors():
            return self._result(await self._script(keys=keys, args=argv))

    async def read(self, job_id: str) -> dict[bytes, bytes] | None:
        """The record's field dict, or None when there is none."""
        value = await self.read_stored(job_id)
        return None if value is None else layout.fields(value)

    async def read_stored(self, job_id: str) -> bytes | None:
        """The record as stored (:mod:`jobpulse.progress.layout`), or None. One ``GET``: on every poll,
        so no context manager here."""
        try:
            return cast(bytes | None, await self.client.get(self.keys.progress(job_id)))
        except redis.exceptions.ResponseError as exc:
            if not _wrong_type(exc):
                raise
            return await self._stored_legacy(job_id)
        except REDIS_ERRORS as exc:
            raise ServiceUnavailable(UNREACHABLE) from exc

    async def read_many(self, job_ids: list[str]) -> list[bytes | None]:
        """Many records as stored, in one round trip (``MGET``: a pipeline of 100 ``GET`` s cost about
        six times as much). ``MGET`` answers nil for a key that is not a string, so the ids without an
        answer are asked their ``TYPE`` (a second round trip, only then) and a hash left by jobpulse
        < 0.6 is read as such."""
        if not job_ids:
            return []
        keys = [self.keys.progress(job_id) for job_id in job_ids]
        with redis_errors():
            out = cast(list[bytes | None], await self.client.mget(keys))
        missing = [index for index, value in enumerate(out) if value is None]
        if missing:
            async with self.client.pipeline(transaction=False) as pipe:
                for index in missing:
                    pipe.type(keys[index])
                with redis_errors():
                    types = await pipe.execute()
            for index, kind in zip(missing, types, strict=True):
                if kind == b"hash":
                    out[index] = await self._stored_legacy(job_ids[index])
        return out

    async def _stored_legacy(self, job_id: str) -> bytes | None:
        with redis_errors():
            raw = await self.client.hgetall(self.keys.progress(job_id))
        return layout.from_hash(cast(Raw, raw))

    async def delete(self, job_id: str) -> None:
        """Remove the record (a submission that could not be queued)."""
        with redis_errors():
            await self.client.delete(self.keys.progress(job_id))
