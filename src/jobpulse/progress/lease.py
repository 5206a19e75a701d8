"""A worker's lease on a job: at most one worker runs a job at a time, even under duplicate delivery."""

from __future__ import annotations

import secrets
from functools import cache
from importlib import resources

import redis

from jobpulse.keys import Keyspace

__all__ = ["Lease"]


@cache
def _lua(name: str) -> str:
    return resources.files("jobpulse.progress").joinpath(f"lua/{name}").read_text()


class Lease:
    """``SET NX PX`` lease, renewed while the job reports, released only by its holder."""

    def __init__(self, client: redis.Redis, keys: Keyspace, job_id: str) -> None:
        self.client = client
        self.key = keys.lock(job_id)
        self.ttl_ms = keys.lock_ttl_ms
        self.token = secrets.token_hex(16)
        self._renew = client.register_script(_lua("renew_lease.lua"))
        self._release = client.register_script(_lua("release_lease.lua"))

    def acquire(self) -> bool:
        """Take the lease; False if another worker holds it."""
        return bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def renew(self) -> bool:
        """Extend the lease; False if it was lost."""
        return bool(self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))

    def release(self) -> None:
        """Give the lease up, if still held."""
        self._release(keys=[self.key], args=[self.token])
