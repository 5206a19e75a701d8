"""Real services for the tests: a Redis server process, the database, a Celery worker, an API server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from jobpulse.embedded import RedisCommand, free_port


class RedisServer:
    """A throwaway ``redis-server`` (jobpulse's embedded one, without persistence) with Redis's default
    data structure settings; it can be stopped and started again mid-test."""

    def __init__(self, folder: Path) -> None:
        self.command = RedisCommand(folder, persistent=False)
        self.url = self.command.url
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command.argv, stdout=subprocess.DEVNULL)
        self.command.wait_ready()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


def stop_group(process: subprocess.Popen[bytes] | None, timeout: float = 20) -> None:
    """SIGTERM a child's process group; SIGKILL it if it has not ended after ``timeout`` seconds."""
    if process is None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def service_env(overrides: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPULSE_")}
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    env.update(overrides)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Worker:
    """``jobpulse worker`` as a subprocess."""

    def __init__(
        self, env: Mapping[str, str], log: Path, concurrency: int = 2, queues: str | None = None
    ) -> None:
        self.env = env
        self.log = log
        self.concurrency = concurrency
        self.queues = queues  # comma-separated; None: every queue
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "jobpulse", "worker", "--concurrency", str(self.concurrency)),
                    *(("--queues", self.queues) if self.queues else ()),
                ],
                env=dict(self.env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while b"ready." not in self.log.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("worker did not start:\n" + self.log.read_text()[-3000:])
            time.sleep(0.05)

    def stop(self) -> None:
        stop_group(self.process)
        self.process = None


class ApiServer:
    """``jobpulse serve`` (granian) as a subprocess on a free port."""

    def __init__(self, env: Mapping[str, str], log: Path, server: str = "granian") -> None:
        self.env = env
        self.log = log
        self.server = server
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "jobpulse",
                    "serve",
                    "--port",
                    str(self.port),
                    "--server",
                    self.server,
                ],
                env=dict(self.env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{self.url}/healthz", timeout=1)
                return
            except httpx.TransportError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("API did not start:\n" + self.log.read_text()[-3000:]) from None
                time.sleep(0.1)

    def stop(self) -> None:
        stop_group(self.process)
        self.process = None
