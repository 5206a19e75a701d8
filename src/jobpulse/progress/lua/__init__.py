"""The Redis Lua scripts, one ``.lua`` file each (their headers name KEYS and ARGV), read once."""

from __future__ import annotations

from functools import cache
from importlib import resources

__all__ = ["lua_source"]


@cache
def lua_source(name: str) -> str:
    """The text of ``name`` (e.g. ``"write_progress.lua"``); clients register it once per connection pool."""
    return resources.files(__name__).joinpath(name).read_text()
