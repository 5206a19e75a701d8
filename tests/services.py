"""Real services for the tests: a Redis server process, the database, a Celery worker, an API server."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from jobpulse.db.engine import create_db_engine
from jobpulse.embedded import RedisServer, free_port

__all__ = ["REPO_ROOT", "ApiServer", "PostgresServer", "RedisServer", "Worker", "service_env", "stop_group"]

REPO_ROOT = Path(__file__).resolve().parent.parent


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
    """``jobpulse worker`` (or another Celery worker's ``command``) as a subprocess."""

    def __init__(
        self,
        env: Mapping[str, str],
        log: Path,
        concurrency: int = 2,
        queues: str | None = None,
        command: Sequence[str] = (),
    ) -> None:
        self.env = env
        self.log = log
        self.concurrency = concurrency
        self.queues = queues  # comma-separated; None: every queue
        self.command = tuple(command)  # run from the repository root; () is ``jobpulse worker``
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the worker and wait until it is ready (again, after :meth:`kill`: the log is appended to)."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command
                or [
                    *(sys.executable, "-m", "jobpulse", "worker", "--concurrency", str(self.concurrency)),
                    *(("--queues", self.queues) if self.queues else ()),
                ],
                env=dict(self.env),
                cwd=REPO_ROOT if self.command else None,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while b"ready." not in self.log.read_bytes()[offset:]:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("worker did not start:\n" + self.log.read_text()[-3000:])
            time.sleep(0.05)

    def stop(self) -> None:
        stop_group(self.process)
        self.process = None

    def kill(self) -> None:
        """SIGKILL the whole worker at once (its main process and pool children), as a crash would."""
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
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


class PostgresServer:
    """The PostgreSQL cluster behind a ``postgresql://`` URL (one ``scripts/postgres.sh`` started), which a
    test may stop and start again. Found by asking the server (the URL's user is a superuser there)."""

    def __init__(self, url: str) -> None:
        engine = create_db_engine(url)
        try:
            with engine.connect() as connection:
                self.data_dir = Path(str(connection.exec_driver_sql("SHOW data_directory").scalar()))
        finally:
            engine.dispose()
        # postmaster.opts holds the command line the server was started with: start it the same way.
        argv = shlex.split((self.data_dir / "postmaster.opts").read_text())
        self.bin_dir = Path(argv[0]).parent
        options = [arg for i, arg in enumerate(argv[1:], 1) if arg != "-D" and argv[i - 1] != "-D"]
        self.options = shlex.join(options)
        self.log = self.data_dir.parent / "server.log"

    def _pg_ctl(self, *args: str) -> None:
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        command = [*as_postgres, str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-w", *args]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, timeout=60)

    def stop(self) -> None:
        """Stop the server now: sessions are ended, their transactions rolled back (``-m fast``)."""
        self._pg_ctl("-m", "fast", "stop")

    def start(self) -> None:
        """Start it again with its original options; returns once it accepts connections."""
        self._pg_ctl("-l", str(self.log), "-o", self.options, "start")
