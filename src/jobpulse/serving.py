"""How ``jobpulse serve`` runs the API: the server's settings, the file descriptor limit, and the
folder that lets several server processes share their metrics.

The settings are the fastest measured on the benchmark machine (bench/poll.py), so that a user gets
them without flags: uvloop when installed, a deep listen queue, and no cap on open connections below
the process's file descriptor limit (granian would otherwise serve 2,048 at a time and leave the rest
waiting unanswered in the listen queue).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["BACKLOG", "MULTIPROC_ENV", "STOP_SECONDS", "granian_server", "metrics_dir", "raise_fd_limit"]

BACKLOG = 4096  # the listen queue: a burst of new connections waits there instead of being refused
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_RESERVED_FDS = 256  # for Redis, the database, logs and files, out of the connection budget
# A process still running this long after SIGTERM is killed. Seen: a process whose sync routes had run
# in anyio's worker threads sometimes waits forever at exit for an idle one of them.
STOP_SECONDS = 20
_NO_LIMIT = 65536


def raise_fd_limit() -> int:
    """Raise this process's open-file soft limit to its hard limit (each connection is a file
    descriptor; the children inherit it); returns the limit now in force (an assumed 65,536 where the
    platform has no such limit to read, e.g. Windows, or sets none)."""
    try:
        import resource
    except ImportError:
        return _NO_LIMIT
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard or hard == resource.RLIM_INFINITY != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # a platform that refuses: serve within the limit given
    return _NO_LIMIT if soft == resource.RLIM_INFINITY else soft


@contextmanager
def metrics_dir(workers: int) -> Iterator[str | None]:
    """With more than one process, a private folder in ``PROMETHEUS_MULTIPROC_DIR`` for the processes'
    counters, removed at exit (one the environment already names is used as is, and kept)."""
    if workers == 1 or os.environ.get(MULTIPROC_ENV):
        yield os.environ.get(MULTIPROC_ENV)
        return
    folder = tempfile.mkdtemp(prefix="jobpulse-metrics-")
    os.environ[MULTIPROC_ENV] = folder
    try:
        yield folder
    finally:
        del os.environ[MULTIPROC_ENV]
        shutil.rmtree(folder, ignore_errors=True)


def granian_server(target: str, host: str, port: int, workers: int, fd_limit: int) -> Any:
    """A granian server for the ASGI factory ``target``, with the settings described above."""
    from granian import Granian
    from granian.constants import Interfaces, Loops

    loop = Loops.uvloop if importlib.util.find_spec("uvloop") is not None else Loops.auto
    return Granian(
        target,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        factory=True,
        loop=loop,
        websockets=False,
        backlog=BACKLOG,
        backpressure=max(BACKLOG, (fd_limit - _RESERVED_FDS) // workers),
        log_access=False,
        workers_kill_timeout=STOP_SECONDS,
    )
