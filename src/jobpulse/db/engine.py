"""Engines: URL normalisation, SQLite pragmas, and a statement counter.

The counter is how the zero-SQL rule is measured rather than assumed: every statement sent on an engine
increments it, and the API exports the count per route in /metrics.
"""

from __future__ import annotations

import contextvars
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy.exc
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from jobpulse.errors import ConfigurationError

__all__ = ["DATABASE_ERRORS", "StatementCounter", "create_db_engine", "current_route", "normalize_url"]

# The database cannot be reached (or, on SQLite, is locked): the API answers 503, workers retry later.
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
)

# The route being served, set by the API per request so statements can be attributed to it.
current_route: contextvars.ContextVar[str] = contextvars.ContextVar("jobpulse_route", default="-")


def normalize_url(url: str) -> str:
    """``postgresql://`` as PostgreSQL users write it becomes the installed driver's dialect."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            try:
                import psycopg2  # type: ignore[import-untyped]  # noqa: F401
            except ImportError as exc:
                raise ConfigurationError(
                    "DATABASE_URL names PostgreSQL, but no driver is installed: pip install 'psycopg[binary]'"
                ) from exc
            return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if parsed.drivername not in ("sqlite", "postgresql+psycopg", "postgresql+psycopg2"):
        raise ConfigurationError(f"Unsupported DATABASE_URL scheme {parsed.drivername!r}")
    return url


class StatementCounter:
    """Counts the SQL statements an engine executes, in total and per route."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0
        self.by_route: Counter[str] = Counter()

    def attach(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, *_args: Any, **_kwargs: Any) -> None:
        route = current_route.get()
        with self._lock:
            self.total += 1
            self.by_route[route] += 1


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_db_engine(url: str, *, counter: StatementCounter | None = None) -> Engine:
    """An engine for ``url`` (SQLite in WAL mode, or PostgreSQL), counting statements if asked."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    if counter is not None:
        counter.attach(engine)
    return engine
