"""Job ids: random UUIDs, version 4, in their canonical lowercase form (never sequential)."""

from __future__ import annotations

import re
import uuid

__all__ = ["is_job_id", "new_job_id"]

_CANONICAL_V4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def new_job_id() -> str:
    """A fresh id, unique across every kind of job."""
    return str(uuid.uuid4())


def is_job_id(value: str) -> bool:
    """Whether ``value`` (already lowercased) is an id jobpulse could have issued."""
    return _CANONICAL_V4.fullmatch(value) is not None
