"""Poll throughput, latency and server CPU per poll, loaded by wrk -t2 on the same machine:

A  ``jobpulse serve`` as shipped (no flags; the real CLI command), ``GET /jobs/{id}/progress/`` with a
   real token, owner check and ETag; with 1 and with 2 server processes (``--workers 2``)
B  the design it replaces: the same API answering ``GET /jobs/{id}/`` from the database,
   on PostgreSQL and on SQLite
C  the ceiling: bench/bare_app.py, the fastest bare stack from the registries (granian, one worker,
   uvloop, hiredis, orjson) doing one read of the same record and a JSON encode per request

.venv/bin/python bench/poll.py [--runs 3] [--seconds 10] [--smoke]
"""

from __future__ import annotations

import statistics
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
from benchkit import (
    OWNER,
    SECRET,
    Chart,
    Options,
    Section,
    Server,
    Target,
    WrkResult,
    app_counters,
    granian_process,
    jobpulse_serve,
    main,
    migrate,
    postgres,
    scratch,
    seed_job,
    table,
    wrk,
)

from jobpulse.auth import mint_token
from jobpulse.keys import Keyspace
from jobpulse.settings import Settings

CONNECTIONS = (64, 256)
SMOKE_CONNECTIONS = (64,)
BARE = "bare_app:app_from_env"
WARMUP_S = 3
A1, A2, C = "A jobpulse serve", "A jobpulse serve --workers 2", "C bare"
STACK_LINE = "jobpulse api pid "  # what `jobpulse serve` prints per process (api/app.py)


@dataclass(frozen=True)
class App:
    label: str
    url: str  # the URL wrk loads
    server: Server
    jobpulse: bool  # a jobpulse API (it has /metrics), not the bare app


@dataclass(frozen=True)
class Run:
    wrk: WrkResult
    sql_per_request: float | None
    cpu_us_per_request: float  # the server processes' CPU time over the run, per request answered


def _measure(app: App, connections: int, seconds: float, token: str) -> Run:
    if not app.jobpulse:
        cpu = app.server.cpu_seconds()
        result = wrk(app.url, connections=connections, seconds=seconds, token=token)
        used = app.server.cpu_seconds() - cpu
        return Run(result, None, 1e6 * used / max(result.requests, 1))
    before = app_counters(app.server.url)
    cpu = app.server.cpu_seconds()
    result = wrk(app.url, connections=connections, seconds=seconds, token=token)
    used = app.server.cpu_seconds() - cpu  # read before the scrapes below, which use CPU too
    after = app_counters(app.server.url, settle=True)
    answered = after.requests - before.requests
    sql = (after.statements - before.statements) / answered if answered else float("nan")
    return Run(result, sql, 1e6 * used / max(answered, 1))


def _serve_together(stack: ExitStack, *servers: AbstractContextManager[Server]) -> list[Server]:
    """Starts ``servers`` in parallel (their imports take seconds each); every one started stops with
    ``stack``, even if another failed to start."""
    with ThreadPoolExecutor(len(servers)) as pool:
        starts = [pool.submit(server.__enter__) for server in servers]
    for server, start in zip(servers, starts, strict=True):
        if start.exception() is None:
            stack.push(server)
    return [start.result() for start in starts]


def _start(stack: ExitStack, token: str) -> list[App]:
    """Starts PostgreSQL, Redis and a server per app (stopped with ``stack``): A (1 and 2 processes),
    B-PG, B-SQLite, then C once the polled record exists (C reads it by its key)."""
    pg_url = stack.enter_context(postgres())
    bench = stack.enter_context(scratch(pg_url))
    logs = bench.folder / "logs"
    logs.mkdir()
    sqlite_url = f"sqlite:///{bench.folder / 'db.sqlite'}"
    migrate(pg_url)
    migrate(sqlite_url)
    one, two, on_pg, on_sqlite = _serve_together(
        stack,
        jobpulse_serve(bench.env, logs / "a1.log"),
        jobpulse_serve(bench.env, logs / "a2.log", workers=2),
        jobpulse_serve(bench.env, logs / "b-pg.log"),
        jobpulse_serve(dict(bench.env, DATABASE_URL=sqlite_url), logs / "b-sqlite.log"),
    )
    pg_job = seed_job(one.url, token, bench.redis_url)
    sqlite_job = seed_job(on_sqlite.url, token, bench.redis_url)
    keys = Keyspace.from_settings(Settings(redis_url=bench.redis_url, secret_key=SECRET))
    bare_env = dict(bench.env, BENCH_PROGRESS_KEY=keys.progress(pg_job))
    bare = stack.enter_context(
        granian_process(BARE, bare_env, pythonpath=Path(__file__).resolve().parent, loop="uvloop")
    )
    progress = f"/jobs/{pg_job}/progress/"
    return [
        App(A1, one.url + progress, one, True),
        App(A2, two.url + progress, two, True),
        App("B PostgreSQL", f"{on_pg.url}/jobs/{pg_job}/", on_pg, True),
        App("B SQLite", f"{on_sqlite.url}/jobs/{sqlite_job}/", on_sqlite, True),
        App(C, bare.url + progress, bare, False),
    ]


def _stacks(apps: list[App]) -> list[list[str]]:
    """What each side ran on, as it reported at run time: jobpulse's start-up lines, C's /stack."""
    rows = []
    for app in apps:
        if app.label.startswith("B"):
            continue
        if app.jobpulse:
            for line in app.server.log_lines(STACK_LINE):
                pid, _, stack = line.removeprefix(STACK_LINE).partition(": ")
                rows.append([app.label, pid, stack])
        else:
            found = httpx.get(f"{app.server.url}/stack", timeout=10).json()
            stack = f"event loop {found['loop']}, Redis parser {found['redis_parser']}, JSON {found['json']}"
            rows.append([app.label, str(app.server.pid), stack])
    return rows


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _ms(value: float) -> str:
    return f"{value:,.1f}"


def run(options: Options) -> Section:
    loads = SMOKE_CONNECTIONS if options.smoke else CONNECTIONS
    token = mint_token(SECRET, OWNER, 3600)
    runs: dict[tuple[str, int], list[Run]] = {}
    with ExitStack() as stack:
        apps = _start(stack, token)
        stacks = _stacks(apps)
        if not options.smoke:  # fills the servers' connection pools at both sizes
            for app in apps:
                for connections in loads:
                    wrk(app.url, connections=connections, seconds=WARMUP_S, token=token)
        # Rounds interleave the apps, so that a noisy spell on the machine hits all of them alike.
        for _ in range(options.runs):
            for connections in loads:
                for app in apps:
                    one = _measure(app, connections, options.seconds, token)
                    runs.setdefault((app.label, connections), []).append(one)

    def rps(label: str, connections: int) -> float:
        return _median([r.wrk.rps for r in runs[(label, connections)]])

    def p99(label: str, connections: int) -> float:
        return _median([r.wrk.p99_ms for r in runs[(label, connections)]])

    def cpu(label: str, connections: int) -> float:
        return _median([r.cpu_us_per_request for r in runs[(label, connections)]])

    rows = []
    for connections in loads:
        ceiling = rps(C, connections)
        for app in apps:
            measured = runs[(app.label, connections)]
            sql = [r.sql_per_request for r in measured if r.sql_per_request is not None]
            rows.append(
                [
                    app.label,
                    str(connections),
                    f"{rps(app.label, connections):,.0f}",
                    f"{rps(app.label, connections) / ceiling:.2f}x",
                    _ms(_median([r.wrk.p50_ms for r in measured])),
                    _ms(p99(app.label, connections)),
                    f"{cpu(app.label, connections):,.0f}",
                    str(sum(r.wrk.errors for r in measured)),
                    f"{_median(sql):.2f}" if sql else "0 (no database)",
                ]
            )
    columns = ["app", "connections", "requests/s", "vs C", "p50 ms", "p99 ms", "server CPU us/poll"]
    columns += ["errors", "SQL/request"]

    targets = [
        Target(
            f"`jobpulse serve` >= 1.0x of C at {c} connections",
            rps(A1, c) >= rps(C, c),
            f"{rps(A1, c):,.0f} vs {rps(C, c):,.0f} req/s: {rps(A1, c) / rps(C, c):.2f}x",
        )
        for c in loads
    ]
    targets += [
        Target(
            f"p99 of `jobpulse serve` no worse than C's at {c} connections",
            p99(A1, c) <= p99(C, c),
            f"{p99(A1, c):,.1f} ms vs {p99(C, c):,.1f} ms: {p99(A1, c) / p99(C, c):.2f}x",
        )
        for c in loads
    ]
    progress_sql = [
        r.sql_per_request for label in (A1, A2) for c in loads for r in runs[(label, c)] if r.sql_per_request
    ]
    targets.append(
        Target(
            "0 SQL per poll (1 and 2 processes)",
            not progress_sql,
            "0 in every run" if not progress_sql else f"up to {max(progress_sql):.2f} per poll",
        )
    )
    ratios = {c: rps(A1, c) / rps("B PostgreSQL", c) for c in loads}
    targets.append(
        Target(
            "A >= 10x B on PostgreSQL",
            all(ratio >= 10 for ratio in ratios.values()),
            ", ".join(f"{ratio:.1f}x at {c} connections" for c, ratio in ratios.items()),
        )
    )
    errors = {label: sum(r.wrk.errors for c in loads for r in runs[(label, c)]) for label in (A1, A2, C)}
    targets.append(
        Target(
            "zero errors (A and C)",
            not any(errors.values()),
            ", ".join(f"{label}: {count}" for label, count in errors.items()),
        )
    )
    charts = [
        Chart(
            f"Poll requests/s, {c} connections", "requests/s", {app.label: rps(app.label, c) for app in apps}
        )
        for c in loads
    ]
    charts.append(
        Chart(
            f"Server CPU per poll, {loads[-1]} connections",
            "us",
            {label: cpu(label, loads[-1]) for label in (A1, A2, C)},
        )
    )
    warmup = "no warm-up (smoke run)" if options.smoke else f"a {WARMUP_S} s warm-up per app and load"
    how = (
        "How: A and B are `jobpulse serve --host 127.0.0.1 --port P` as a user runs it (no tuning flags; "
        "`--workers 2` for the second A); C is bench/bare_app.py on `granian --loop uvloop`, one worker. "
        f"Each is loaded by `wrk -t2` with a valid bearer token, after {warmup}; {options.runs} round(s) "
        f"of {options.seconds} s runs, each round running every app at {' and '.join(map(str, loads))} "
        "connections in turn; the table shows medians (errors are summed over the runs: socket errors "
        "plus non-2xx answers). Servers are all up during the rounds, only the loaded one is busy. A and "
        "B-PostgreSQL are API processes on PostgreSQL (scripts/postgres.sh: fsync off), B-SQLite an "
        "API on SQLite (WAL); C reads the same Redis record as A, by its key. The job polled was "
        "submitted through `POST /jobs/` and moved to RUNNING as a worker would. SQL/request is the "
        "increase of `jobpulse_sql_statements_total` (all routes) in the app's /metrics over the run, "
        "divided by the increase of the requests it answered (not wrk's count, which leaves out the "
        "requests in flight when it stops); with 2 processes /metrics sums both (multiprocess mode). "
        "Server CPU per poll is the user + system time of the server's processes (psutil) over the run, "
        "divided by the requests answered. wrk, Redis, PostgreSQL and the server share the machine's "
        "cores, and the machine is noisy: read the ratios, not the absolute numbers."
    )
    ran_on = "What each side ran on, as reported by the running processes (jobpulse: the line each "
    ran_on += "`jobpulse serve` process prints at start; C: its `/stack` answer):"
    markdown = "\n\n".join([table(columns, rows), how, ran_on, table(["app", "pid", "runs on"], stacks)])
    return Section("Poll throughput: jobpulse vs the database vs the ceiling", markdown, targets, charts)


if __name__ == "__main__":
    main(run, __doc__)
