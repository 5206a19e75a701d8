"""What the benchmarks share: scratch services, a wrk runner, and the shape of a benchmark's result.

Each benchmark module has ``run(options) -> Section`` and can also run alone (``python bench/x.py``);
``bench/run.py`` runs them all and writes ``bench/results/``. Nothing here asserts a number: results are
printed and written, and targets are reported as met or missed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from jobpulse.embedded import RedisCommand, free_port

SECRET = "bench-secret-bench-secret-bench-secret"
ROOT = Path(__file__).resolve().parent.parent


# -- results -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """How hard to run: ``smoke`` is one short iteration of everything (CI keeps the scripts alive)."""

    smoke: bool = False
    runs: int = 3  # repetitions whose median is reported
    seconds: int = 10  # length of one load run

    @classmethod
    def for_smoke(cls) -> Options:
        return cls(smoke=True, runs=1, seconds=1)


@dataclass(frozen=True)
class Target:
    """A target from the issue, and whether this run met it."""

    name: str
    met: bool
    detail: str


@dataclass(frozen=True)
class Chart:
    """One bar chart of the plot: a value per label, in ``unit``."""

    title: str
    unit: str
    bars: dict[str, float]


@dataclass
class Section:
    """One benchmark's result: markdown (tables and notes), targets, and charts for the plot."""

    title: str
    markdown: str
    targets: list[Target] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)


def table(columns: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# -- services ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scratch:
    """A temporary folder with a Redis server in it, and the environment that points jobpulse there."""

    folder: Path
    redis_url: str
    env: dict[str, str]


@contextmanager
def scratch(database_url: str | None = None) -> Iterator[Scratch]:
    """A throwaway Redis (no persistence), and SQLite unless ``database_url`` is given; removed after."""
    folder = Path(tempfile.mkdtemp(prefix="jobpulse-bench-"))
    redis_server = RedisCommand(folder, persistent=False)
    process = subprocess.Popen(redis_server.argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        redis_server.wait_ready()
        env = dict(
            os.environ,
            REDIS_URL=redis_server.url,
            DATABASE_URL=database_url or f"sqlite:///{folder / 'db.sqlite'}",
            JOBPULSE_SECRET_KEY=SECRET,
            JOBPULSE_DATA_DIR=str(folder / "data"),
            # The benchmarks submit hundreds of jobs as one owner; polls are not rate-limited anyway.
            JOBPULSE_SUBMIT_RATE_PER_MINUTE="0",
        )
        yield Scratch(folder, redis_server.url, env)
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster (scripts/postgres.sh: fsync off, pg_stat_statements loaded)."""
    folder = Path(tempfile.mkdtemp(prefix="jobpulse-bench-pg-"))
    script = ROOT / "scripts" / "postgres.sh"
    url = subprocess.run([str(script), "start", str(folder)], check=True, capture_output=True, text=True)
    try:
        yield url.stdout.strip()
    finally:
        subprocess.run([str(script), "stop", str(folder)], check=False)


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


@dataclass(frozen=True)
class Server:
    """A server started for a benchmark: its URL, main process and log."""

    url: str
    pid: int
    log: Path | None = None

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the server's processes: its main one and children."""
        import psutil

        main = psutil.Process(self.pid)
        total = 0.0
        for process in [main, *main.children(recursive=True)]:
            with suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def log_lines(self, prefix: str) -> list[str]:
        """The lines of its log that start with ``prefix``."""
        if self.log is None or not self.log.exists():
            return []
        return [line for line in self.log.read_text().splitlines() if line.startswith(prefix)]


@contextmanager
def _server(argv: list[str], env: dict[str, str], port: int, log: Path | None) -> Iterator[Server]:
    with (log or Path(os.devnull)).open("ab") as out:
        process = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz")
        yield Server(url, process.pid, log)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:  # said, not raised: the results are in by now
            tail = log.read_text()[-2000:] if log is not None else ""
            print(f"{argv[0]}: still running 30 s after SIGTERM; killed\n{tail}", file=sys.stderr)
        finally:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # anything left of its processes
            process.wait(10)


@contextmanager
def granian_process(
    target: str,
    env: dict[str, str],
    *,
    pythonpath: Path | None = None,
    loop: str = "auto",
    log: Path | None = None,
) -> Iterator[Server]:
    """``target`` (a ``module:factory``) served by granian's command line, one worker, on a free port."""
    port = free_port()
    if pythonpath is not None:
        env = dict(env, PYTHONPATH=str(pythonpath))
    argv = [str(Path(sys.executable).parent / "granian"), "--interface", "asgi", "--factory"]
    argv += ["--port", str(port), "--no-ws", "--log-level", "warning", "--backlog", "2048"]
    argv += ["--loop", loop, target]
    with _server(argv, env, port, log) as server:
        yield server


@contextmanager
def granian(target: str, env: dict[str, str], *, pythonpath: Path | None = None) -> Iterator[str]:
    """``target`` served by granian, one worker, on a free port; yields its URL."""
    with granian_process(target, env, pythonpath=pythonpath) as server:
        yield server.url


@contextmanager
def jobpulse_serve(env: dict[str, str], log: Path, *, workers: int = 1) -> Iterator[Server]:
    """``jobpulse serve`` as a user runs it (no tuning flags), on a free port; its output goes to ``log``."""
    port = free_port()
    argv = [str(Path(sys.executable).parent / "jobpulse"), "serve", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--workers", str(workers)]
    with _server(argv, env, port, log) as server:
        yield server


PY_SPY = Path(sys.executable).parent / "py-spy"


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with suppress(OSError):
            for child in (task / "children").read_text().split():
                found += [int(child), *_descendants(int(child))]
    return found


@contextmanager
def worker(
    env: dict[str, str], log: Path, profile: Path | None = None, queues: str | None = None
) -> Iterator[None]:
    """``jobpulse worker --concurrency 1`` (on ``queues``, else all); under ``py-spy record`` (all
    processes) if ``profile``."""
    argv = [sys.executable, "-m", "jobpulse", "worker", "--concurrency", "1"]
    if queues:
        argv += ["--queues", queues]
    if profile is not None:  # py-spy may only attach to its own children here: it starts the worker
        argv = [str(PY_SPY), "record", "--subprocesses", "--format", "raw", "-o", str(profile), "--", *argv]
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while b"ready." not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("worker did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.05)
        yield
    finally:
        # No job is running by now: kill the worker and its pool. Under py-spy, kill only what py-spy
        # started: py-spy then writes its file and exits.
        if profile is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        # Again and again: Celery's main process replaces a pool child killed before it (a race seen
        # once, leaving py-spy waiting on the new child).
        deadline = time.monotonic() + 15
        while process.poll() is None and time.monotonic() < deadline:
            for pid in _descendants(process.pid):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                process.wait(0.5)
        if process.poll() is None and profile is not None:
            # py-spy itself hangs now and then once its target is gone: Ctrl-C makes it write its file.
            process.send_signal(signal.SIGINT)
            with suppress(subprocess.TimeoutExpired):
                process.wait(20)
        try:
            process.wait(10)
        finally:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # anything left of the group
            process.wait(10)


def worker_seconds(record: dict[str, Any]) -> float:
    """A job's time in its worker, from its DB record: ``finished_at - started_at``."""
    started = datetime.fromisoformat(record["started_at"].replace("Z", "+00:00"))
    return (datetime.fromisoformat(record["finished_at"].replace("Z", "+00:00")) - started).total_seconds()


# -- load --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured."""

    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors plus non-2xx/3xx answers


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(out: str, label: str) -> float:
    match = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out)
    return float(match.group(1)) * _UNITS[match.group(2)] if match else float("nan")


def wrk(
    url: str,
    *,
    connections: int,
    seconds: float,
    token: str,
    threads: int = 2,
    delay_ms: int | None = None,
    timeout_s: int = 30,
    extra_lua: str = "",
) -> WrkResult:
    """Load ``url`` with wrk (Debian's package), ``Authorization: Bearer token`` on every request.

    ``delay_ms`` makes each connection wait that long between its requests: ``connections`` pollers.
    ``timeout_s`` is wrk's answer timeout: wrk counts a slower answer as an error and leaves it out of
    the percentiles (its default, 2 s, would hide an overloaded server's real latency). ``extra_lua`` is
    added to wrk's script (e.g. ``wrk.method``, ``wrk.body``).
    """
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (scripts/bootstrap.sh --test installs it)")
    script = f'wrk.headers["Authorization"] = "Bearer {token}"\n'
    if delay_ms is not None:
        script += f"function delay() return {delay_ms} end\n"
    script += extra_lua
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script)
    try:
        argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout_s}s"]
        argv += ["--latency", "-s", lua.name, url]
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    finally:
        Path(lua.name).unlink()
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return WrkResult(requests, rps, _ms(out, "50%"), _ms(out, "99%"), errors)


# -- the machine -------------------------------------------------------------------------------------


def machine() -> str:
    """One line naming the machine and the versions the numbers depend on."""
    import platform

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
        except OSError:
            return "absent"
        match = re.search(r"\d+\.\d+(\.\d+)?", out)
        return match.group(0) if match else "unknown"

    pg = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    parts = [
        f"{os.cpu_count()} cores, {cpu}",
        platform.platform(terse=True),
        f"Python {platform.python_version()}",
        f"Redis {version(['redis-server', '--version'])}",
        f"PostgreSQL {version([str(pg[-1]), '--version']) if pg else 'absent'}",
        f"wrk {version(['wrk', '--version'])}",
        f"Node.js {version(['node', '--version'])}",
    ]
    return ", ".join(parts)


# -- a job to poll -----------------------------------------------------------------------------------

OWNER = "bench"  # the owner of the benchmarks' tokens and jobs


def migrate(database_url: str) -> None:
    """Bring the database at ``database_url`` to the latest schema (what ``jobpulse migrate`` does)."""
    from jobpulse.db.engine import create_db_engine
    from jobpulse.db.migrate import upgrade

    engine = create_db_engine(database_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def seed_job(api_url: str, token: str, redis_url: str) -> str:
    """A job submitted through the API (DB row and progress record), moved to RUNNING mid-way as a
    worker would report it, so polls read a typical record; returns its id. No worker is needed."""
    import redis

    from jobpulse.keys import Keyspace
    from jobpulse.progress.record import ProgressUpdate
    from jobpulse.progress.store import ProgressStore
    from jobpulse.settings import Settings
    from jobpulse.states import State

    csv = ("data.csv", b"name,amount\nalpha,1\nbeta,2\n", "text/csv")
    reply = httpx.post(
        f"{api_url}/jobs/",
        headers={"Authorization": f"Bearer {token}"},
        data={"kind": "spreadsheet_import"},
        files={"file": csv},
        timeout=30,
    )
    reply.raise_for_status()
    job_id: str = reply.json()["id"]
    update = ProgressUpdate(
        State.RUNNING,
        percent=42.5,
        current=4250,
        total=10000,
        stage="validating",
        message="Processed 4,250 of 10,000 rows",
        eta_seconds=12.3,
    )
    keys = Keyspace.from_settings(Settings(redis_url=redis_url, secret_key=SECRET))
    with redis.Redis.from_url(redis_url) as client:
        result = ProgressStore(client, keys).write(job_id, update, owner=OWNER, kind="spreadsheet_import")
    if not result.accepted:
        raise RuntimeError(f"the RUNNING progress record was refused: {result}")
    return job_id


@dataclass(frozen=True)
class AppCounters:
    """What a jobpulse API's /metrics has counted so far."""

    statements: float  # SQL statements run, all routes
    requests: float  # requests answered, all routes but /metrics


_COUNTER = re.compile(r"^(jobpulse_sql_statements_total|jobpulse_http_requests_total)\{(.*)\} (\S+)$")


def _read_counters(api_url: str) -> AppCounters:
    statements = requests = 0.0
    for line in httpx.get(f"{api_url}/metrics", timeout=30).text.splitlines():
        match = _COUNTER.match(line)
        if match is None:
            continue
        name, labels, value = match.groups()
        if name == "jobpulse_sql_statements_total":
            statements += float(value)
        elif 'route="/metrics"' not in labels:
            requests += float(value)
    return AppCounters(statements, requests)


def app_counters(api_url: str, *, settle: bool = False) -> AppCounters:
    """The API's counters; with ``settle``, once they stop moving, so that the requests still in flight
    when a load stopped are answered (a statement is counted when it runs, its request when answered)."""
    last = _read_counters(api_url)
    for _ in range(50 if settle else 0):
        time.sleep(0.2)
        now = _read_counters(api_url)
        if now == last:
            break
        last = now
    return last


def main(run: Callable[[Options], Section], doc: str | None, *, seconds: int = Options.seconds) -> None:
    """The command line of one benchmark module: ``--runs``, ``--seconds``, ``--smoke``; prints its result."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=Options.runs)
    parser.add_argument("--seconds", type=int, default=seconds, help="length of one load run")
    parser.add_argument("--smoke", action="store_true", help="one short iteration")
    args = parser.parse_args()
    options = Options.for_smoke() if args.smoke else Options(runs=args.runs, seconds=args.seconds)
    section = run(options)
    print(f"## {section.title}\n\n{section.markdown}\n\nMachine: {machine()}.\n")
    for target in section.targets:
        print(f"- {'met' if target.met else 'MISSED'}: {target.name} ({target.detail})")
