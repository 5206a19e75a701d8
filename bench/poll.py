"""Poll throughput and latency, one granian worker per app, loaded by wrk -t2 on the same machine:

A  jobpulse ``GET /jobs/{id}/progress/`` (the real app, real token check): one Redis HGETALL
B  the design it replaces: the same API answering ``GET /jobs/{id}/`` from the database,
   on PostgreSQL and on SQLite
C  the ceiling: bench/bare_app.py, a bare ASGI app doing the same single Redis read

.venv/bin/python bench/poll.py [--runs 3] [--seconds 10] [--smoke]
"""

from __future__ import annotations

import statistics
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path

from benchkit import (
    OWNER,
    SECRET,
    Chart,
    Options,
    Section,
    Target,
    WrkResult,
    app_counters,
    granian,
    main,
    migrate,
    postgres,
    scratch,
    seed_job,
    table,
    wrk,
)

from jobpulse.auth import mint_token

CONNECTIONS = (64, 256)
SMOKE_CONNECTIONS = (64,)
API = "jobpulse.api.app:app_from_env"
BARE = "bare_app:app_from_env"
WARMUP_S = 3


@dataclass(frozen=True)
class App:
    label: str
    url: str  # the URL wrk loads
    api: str | None  # the jobpulse API serving it (for its /metrics), None for the bare app


@dataclass(frozen=True)
class Run:
    wrk: WrkResult
    sql_per_request: float | None


def _measure(app: App, connections: int, seconds: float, token: str) -> Run:
    if app.api is None:
        return Run(wrk(app.url, connections=connections, seconds=seconds, token=token), None)
    before = app_counters(app.api)
    result = wrk(app.url, connections=connections, seconds=seconds, token=token)
    after = app_counters(app.api, settle=True)
    answered = after.requests - before.requests
    return Run(result, (after.statements - before.statements) / answered if answered else float("nan"))


def _serve_together(stack: ExitStack, *servers: AbstractContextManager[str]) -> list[str]:
    """Starts ``servers`` in parallel (their imports take seconds each); every one started stops with
    ``stack``, even if another failed to start."""
    with ThreadPoolExecutor(len(servers)) as pool:
        starts = [pool.submit(server.__enter__) for server in servers]
    for server, start in zip(servers, starts, strict=True):
        if start.exception() is None:
            stack.push(server)
    return [start.result() for start in starts]


def _start(stack: ExitStack, token: str) -> list[App]:
    """Starts PostgreSQL, Redis and a server per app (stopped with ``stack``): A, B-PG, B-SQLite, C."""
    pg_url = stack.enter_context(postgres())
    bench = stack.enter_context(scratch(pg_url))
    sqlite_url = f"sqlite:///{bench.folder / 'db.sqlite'}"
    migrate(pg_url)
    migrate(sqlite_url)
    jobpulse, on_pg, on_sqlite, bare = _serve_together(
        stack,
        granian(API, bench.env),
        granian(API, bench.env),
        granian(API, dict(bench.env, DATABASE_URL=sqlite_url)),
        granian(BARE, bench.env, pythonpath=Path(__file__).resolve().parent),
    )
    pg_job = seed_job(on_pg, token, bench.redis_url)
    sqlite_job = seed_job(on_sqlite, token, bench.redis_url)
    return [
        App("A jobpulse", f"{jobpulse}/jobs/{pg_job}/progress/", jobpulse),
        App("B PostgreSQL", f"{on_pg}/jobs/{pg_job}/", on_pg),
        App("B SQLite", f"{on_sqlite}/jobs/{sqlite_job}/", on_sqlite),
        App("C bare", f"{bare}/jobs/{pg_job}/progress/", None),
    ]


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

    rows = []
    for connections in loads:
        ceiling = rps("C bare", connections)
        for app in apps:
            measured = runs[(app.label, connections)]
            sql = [r.sql_per_request for r in measured if r.sql_per_request is not None]
            rows.append(
                [
                    app.label,
                    str(connections),
                    f"{rps(app.label, connections):,.0f}",
                    _ms(_median([r.wrk.p50_ms for r in measured])),
                    _ms(p99(app.label, connections)),
                    str(sum(r.wrk.errors for r in measured)),
                    f"{_median(sql):.2f}" if sql else "0 (no database)",
                    f"{rps(app.label, connections) / ceiling:.2f}x",
                ]
            )
    columns = ["app", "connections", "requests/s", "p50 ms", "p99 ms", "errors", "SQL/request", "vs C"]

    targets = [
        Target(
            f"A >= 0.85x of C at {c} connections",
            rps("A jobpulse", c) >= 0.85 * rps("C bare", c),
            f"{rps('A jobpulse', c):,.0f} vs {rps('C bare', c):,.0f} req/s: "
            f"{rps('A jobpulse', c) / rps('C bare', c):.2f}x",
        )
        for c in loads
    ]
    ratios = {c: rps("A jobpulse", c) / rps("B PostgreSQL", c) for c in loads}
    targets.append(
        Target(
            "A >= 10x B on PostgreSQL",
            all(ratio >= 10 for ratio in ratios.values()),
            ", ".join(f"{ratio:.1f}x at {c} connections" for c, ratio in ratios.items()),
        )
    )
    a99, c99 = p99("A jobpulse", loads[-1]), p99("C bare", loads[-1])
    targets.append(
        Target(
            f"p99 of A at {loads[-1]} connections within 1.5x of C's",
            a99 <= 1.5 * c99,
            f"{a99:,.1f} ms vs {c99:,.1f} ms: {a99 / c99:.2f}x",
        )
    )
    errors = {
        label: sum(r.wrk.errors for c in loads for r in runs[(label, c)])
        for label in ("A jobpulse", "C bare")
    }
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
    warmup = "no warm-up (smoke run)" if options.smoke else f"a {WARMUP_S} s warm-up per app and load"
    how = (
        "How: each app is served by granian (one worker, one process) on this machine and loaded by "
        f"`wrk -t2` with a valid bearer token, after {warmup}; {options.runs} round(s) of "
        f"{options.seconds} s runs, each round running every app at {' and '.join(map(str, loads))} "
        "connections in turn; the table shows medians (errors are summed over the runs: socket errors "
        "plus non-2xx answers). Servers are all up during the rounds, only the loaded one is busy. A and "
        "B-PostgreSQL are two API processes on PostgreSQL (scripts/postgres.sh: fsync off), B-SQLite an "
        "API on SQLite (WAL); C polls the same Redis record as A. The job polled was "
        "submitted through `POST /jobs/` and moved to RUNNING as a worker would. SQL/request is the "
        "increase of `jobpulse_sql_statements_total` (all routes) in the app's /metrics over the run, "
        "divided by the increase of the requests it answered (not wrk's count, which leaves out the "
        "requests in flight when it stops). wrk, Redis, PostgreSQL and the server share the machine's "
        "cores, and the machine is noisy: read the ratios, not the absolute numbers."
    )
    markdown = "\n\n".join([table(columns, rows), how])
    return Section("Poll throughput: jobpulse vs the database vs the ceiling", markdown, targets, charts)


if __name__ == "__main__":
    main(run, __doc__)
