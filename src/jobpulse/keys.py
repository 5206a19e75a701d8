"""Every Redis key jobpulse uses, and the TTL policy of progress records.

The keyspace at a glance (``P`` is ``Settings.key_prefix``, ``jp:`` by default)::

    P p:{id}        string the progress record of job or video {id}: a header and the pre-rendered
                           body (jobpulse.progress.layout); TTL active / terminal
    P ev:{id}       channel  each accepted progress write's body is PUBLISHed here (for push clients)
    P lock:{id}     string the lease of the worker running {id}; TTL job_lock_seconds
    P retry:{id}    string set when a started job meets a Redis or database error and waits for its retry
                           (the retry's start is not counted again); TTL the longest retry delay + a lease
    P rate:{owner}  string submissions of {owner} in the current minute; TTL the rest of that minute
    P reaper:lock   string held by the worker whose reaper runs this pass; TTL reaper_interval_seconds
    P reaper:lost   hash   {id} -> when the reaper first found a running job without a lease (ms)
    P prune:lock    string held by the worker that prunes this period; TTL prune_interval_seconds
    P epoch         string written once; its absence means Redis lost its data (restart, flush)
    (Celery's own keys: the broker queues, "unacked" and friends, under their own names)
"""

from __future__ import annotations

from dataclasses import dataclass

from jobpulse.settings import Settings

__all__ = ["Keyspace"]


@dataclass(frozen=True, slots=True)
class Keyspace:
    """Key names and lifetimes, derived from settings once."""

    prefix: str
    active_ttl_ms: int
    terminal_ttl_ms: int
    lock_ttl_ms: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyspace:
        return cls(
            prefix=settings.key_prefix,
            active_ttl_ms=settings.progress_ttl_seconds * 1000,
            terminal_ttl_ms=settings.terminal_progress_ttl_seconds * 1000,
            lock_ttl_ms=settings.job_lock_seconds * 1000,
        )

    def progress(self, job_id: str) -> str:
        """The progress record (a string: header and pre-rendered body)."""
        return f"{self.prefix}p:{job_id}"

    def events(self, job_id: str) -> str:
        """The channel accepted writes are published on."""
        return f"{self.prefix}ev:{job_id}"

    def lock(self, job_id: str) -> str:
        """The running worker's lease on the job."""
        return f"{self.prefix}lock:{job_id}"

    def retry(self, job_id: str) -> str:
        """Set while a started job waits to be retried after an infrastructure error."""
        return f"{self.prefix}retry:{job_id}"

    def rate(self, owner: str) -> str:
        """The owner's submission counter of the current window."""
        return f"{self.prefix}rate:{owner}"

    @property
    def reaper_lock(self) -> str:
        """Held by the one worker whose reaper runs a pass."""
        return f"{self.prefix}reaper:lock"

    @property
    def reaper_lost(self) -> str:
        """Running jobs found without a lease, and since when."""
        return f"{self.prefix}reaper:lost"

    @property
    def prune_lock(self) -> str:
        """Held by the one worker that runs retention this period."""
        return f"{self.prefix}prune:lock"

    @property
    def epoch(self) -> str:
        """A marker that only data loss removes: then queued messages may be gone too."""
        return f"{self.prefix}epoch"
