"""What the benchmark scripts share: a scratch Redis server and the environment of jobpulse processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from jobpulse.embedded import RedisCommand

SECRET = "bench-secret-bench-secret-bench-secret"


@dataclass(frozen=True)
class Scratch:
    """A temporary folder with a Redis server in it, and the environment that points jobpulse there."""

    folder: Path
    redis_url: str
    env: dict[str, str]


@contextmanager
def scratch() -> Iterator[Scratch]:
    """A throwaway Redis (no persistence) and SQLite in a temporary folder, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="jobpulse-bench-"))
    redis_server = RedisCommand(folder, persistent=False)
    process = subprocess.Popen(redis_server.argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        redis_server.wait_ready()
        env = dict(
            os.environ,
            REDIS_URL=redis_server.url,
            DATABASE_URL=f"sqlite:///{folder / 'db.sqlite'}",
            JOBPULSE_SECRET_KEY=SECRET,
            JOBPULSE_DATA_DIR=str(folder / "data"),
        )
        yield Scratch(folder, redis_server.url, env)
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def wait_http(url: str, timeout: float = 30.0) -> None:
    """Block until ``url`` answers (a server that is starting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
