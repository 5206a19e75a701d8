"""The progress record as the SDK hands it out: typed, with the state as :class:`~jobpulse.states.State`."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from jobpulse.states import State

__all__ = ["Progress"]


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress body (contract: "Progress body"); ``state`` is UNKNOWN while there is no record.

    ``details`` is the small JSON object the job's worker attached, or None.
    """

    id: str
    kind: str | None
    state: State
    terminal: bool
    percent: float | None = None
    current: float | None = None
    total: float | None = None
    stage: str | None = None
    message: str | None = None
    error_reason: str | None = None
    details: dict[str, Any] | None = field(default=None, hash=False)  # a dict cannot be hashed
    eta_seconds: float | None = None
    updated_at: str | None = None
    version: int = 0
    poll_after_ms: int | None = None

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Progress:
        """From a progress body, or from a DB record (fields it lacks are null, ``version`` 0)."""
        values: dict[str, Any] = {f.name: body.get(f.name) for f in fields(cls)}
        values["state"] = State(body["state"])
        values["terminal"] = bool(body.get("terminal"))
        values["version"] = int(body.get("version") or 0)
        if not isinstance(values["details"], dict):  # absent (an older server, a DB record) or not an object
            values["details"] = None
        if "version" not in body:  # a DB record: no hint, and no progress-only fields
            values["poll_after_ms"] = None
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """The wire shape (``state`` as its string)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["state"] = self.state.value
        return out
