"""Placeholder while the ai_inference job is written."""

from __future__ import annotations

from typing import Any


def register(app: Any) -> None:
    """Register the ai_inference task on ``app``."""
