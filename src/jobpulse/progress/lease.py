"""A worker's lease on a job: at most one worker runs a job at a time, even under duplicate delivery."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from jobpulse.keys import Keyspace
from jobpulse.progress.lua import lua_source
from jobpulse.progress.store import REDIS_ERRORS

__all__ = ["Lease"]

log = logging.getLogger(__name__)


class Lease:
    """``SET NX PX`` lease, renewed while the job reports, released only by its holder."""

    def __init__(self, client: redis.Redis, keys: Keyspace, job_id: str) -> None:
        self.client = client
        self.key = keys.lock(job_id)
        self.ttl_ms = keys.lock_ttl_ms
        self.token = secrets.token_hex(16)
        self._renew = client.register_script(lua_source("renew_lease.lua"))
        self._release = client.register_script(lua_source("release_lease.lua"))

    def acquire(self) -> bool:
        """Take the lease; False if another worker holds it."""
        return bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def renew(self) -> bool:
        """Extend the lease; False if another worker holds it.

        A lease whose key vanished (Redis restarted empty) is taken back, so the reaper does not mistake a
        live worker for a dead one.
        """
        renewed = int(self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))
        if renewed == 2:
            log.info("lease %s was gone (Redis lost its data?); taken back", self.key)
        return renewed > 0

    def release(self) -> None:
        """Give the lease up, if still held."""
        self._release(keys=[self.key], args=[self.token])

    @contextmanager
    def kept_alive(self) -> Iterator[None]:
        """Renew the (acquired) lease every third of its TTL from a thread, then release it.

        A thread, not the job's progress reports: a job may be silent for longer than the TTL.
        """
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.ttl_ms / 3000):
                try:
                    if not self.renew():
                        log.warning("lease %s was lost", self.key)
                except REDIS_ERRORS as exc:
                    log.warning("lease %s not renewed: %r", self.key, exc)

        thread = threading.Thread(target=renew, name=f"lease-{self.key}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            try:
                self.release()
            except REDIS_ERRORS as exc:  # it expires on its own
                log.warning("lease %s not released: %r", self.key, exc)
