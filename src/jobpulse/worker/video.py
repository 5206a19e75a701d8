"""Placeholder while the video job is written."""

from __future__ import annotations

from typing import Any


def register(app: Any) -> None:
    """Register the video task on ``app``."""
