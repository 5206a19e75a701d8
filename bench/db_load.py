"""Database load at scale: N pollers, one request a second each, against jobpulse's progress endpoint
(A: Redis only) and against the design it replaces (B: the job's record read from PostgreSQL), both
served by one ``jobpulse serve`` (as shipped: one process) on PostgreSQL.

    .venv/bin/python bench/db_load.py [--runs 3] [--seconds 20] [--smoke]
"""

from __future__ import annotations

import resource
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

import psutil
import psycopg
from benchkit import (
    OWNER,
    SECRET,
    AppCounters,
    Chart,
    Options,
    Section,
    Target,
    WrkResult,
    app_counters,
    jobpulse_serve,
    main,
    migrate,
    postgres,
    scratch,
    seed_job,
    table,
    wrk,
)
from psycopg.rows import TupleRow

from jobpulse.auth import mint_token

POLLERS = (1000, 5000)
SMOKE_POLLERS = (50, 200)
MIN_SECONDS = 20  # a poller makes one request a second: shorter runs are mostly ramp-up
SMOKE_SECONDS = 3
# Our own queries (they all read pg_stat_statements) are left out of the statements counted.
STATEMENTS = "SELECT query, calls FROM pg_stat_statements WHERE query NOT ILIKE '%pg_stat%'"
SESSIONS = "SELECT sum(sessions) FROM pg_stat_database"
QUIET_TIMEOUT_S = 120


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic()
    statements: dict[str, int]  # calls so far per statement, as pg_stat_statements counts them
    cpu_s: float  # PostgreSQL's CPU time so far
    sessions: int  # connections PostgreSQL has accepted so far (pg_stat_database)


@dataclass(frozen=True)
class Case:
    wrk: WrkResult
    seconds: float  # the wrk run, between the samples before it and at its end
    statements: int  # PostgreSQL statements during the run
    cpu_s: float  # PostgreSQL CPU during the run
    # Per request the API answered, counted once the requests in flight at the end were answered:
    per_request: dict[str, float]  # PostgreSQL's count, by statement
    app_sql_per_request: float  # the API's own count (jobpulse_sql_statements_total)
    sessions_per_request: float  # new PostgreSQL connections

    @property
    def statements_per_s(self) -> float:
        return self.statements / self.seconds


class Postgres:
    """Samples what PostgreSQL did: statements run (pg_stat_statements) and CPU used (psutil)."""

    def __init__(self, connection: psycopg.Connection[TupleRow]) -> None:
        self.connection = connection
        connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        row = connection.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        postmaster = psutil.Process(int(row[0])).parent()
        assert postmaster is not None
        self.postmaster = postmaster

    def sample(self) -> Sample:
        statements = {str(query): int(calls) for query, calls in self.connection.execute(STATEMENTS)}
        row = self.connection.execute(SESSIONS).fetchone()
        assert row is not None
        return Sample(time.monotonic(), statements, self._cpu_seconds(), int(row[0]))

    def _cpu_seconds(self) -> float:
        """User and system CPU of the postmaster and its backends, live or exited (exited ones are in
        the postmaster's ``children_*`` times once reaped)."""
        times = self.postmaster.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in self.postmaster.children(recursive=True):
            try:
                child_times = child.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += child_times.user + child_times.system
        return total


def _quiet(pg: Postgres, api: str) -> tuple[AppCounters, Sample]:
    """The counters once the API and PostgreSQL are idle: an overloaded server goes on answering the
    requests it queued after their pollers have left (at B's rate, 5,000 of them take half a minute)."""
    now = app_counters(api), pg.sample()
    deadline = time.monotonic() + QUIET_TIMEOUT_S
    while time.monotonic() < deadline:
        time.sleep(0.3)
        last, now = now, (app_counters(api), pg.sample())
        if now[0] == last[0] and now[1].statements == last[1].statements:
            break
    return now


def _case(pg: Postgres, api: str, url: str, pollers: int, seconds: float, token: str) -> Case:
    counters, before = app_counters(api), pg.sample()  # quiet: the previous case waited for it
    result = wrk(url, connections=pollers, seconds=seconds, token=token, delay_ms=1000)
    end = pg.sample()
    counters_after, after = _quiet(pg, api)
    answered = max(counters_after.requests - counters.requests, 1)
    per_request = {
        query: (calls - before.statements.get(query, 0)) / answered
        for query, calls in after.statements.items()
        if calls != before.statements.get(query, 0)
    }
    return Case(
        result,
        end.at - before.at,
        sum(end.statements.values()) - sum(before.statements.values()),
        end.cpu_s - before.cpu_s,
        per_request,
        (counters_after.statements - counters.statements) / answered,
        (after.sessions - before.sessions) / answered,
    )


def _raise_fd_limit(needed: int) -> None:
    """Each poller is a socket in wrk and in the server; both inherit this process's limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise RuntimeError(f"{needed} file descriptors are needed, the hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _answer_s(case: Case, pollers: int, seconds: float) -> float:
    """The mean time to answer, from the requests made: a poller's cycle is its answer plus 1 s, and
    wrk delays each poller's first request by 1 s too (Little's law; answers pending when a case ends
    are in no percentile)."""
    return max(0.0, (seconds - 1) * pollers / max(case.wrk.requests, 1) - 1)


def _answer(answer_s: float, seconds: float) -> str:
    return f"{answer_s:.2f}" if answer_s < seconds - 1 else f"> {seconds - 1:.0f} (most pollers: no answer)"


def _p99(runs: list[Case]) -> str:
    p99 = _median([c.wrk.p99_ms for c in runs])
    return f"{p99:,.0f}" if p99 > 0 else "n/a (no answer in time)"


def _shorten(query: str, length: int = 40) -> str:
    query = " ".join(query.split())
    return query if len(query) <= length else query[: length - 1] + "…"


def _median(values: list[float]) -> float:
    return statistics.median(values)


def run(options: Options) -> Section:
    pollers = SMOKE_POLLERS if options.smoke else POLLERS
    seconds = SMOKE_SECONDS if options.smoke else max(options.seconds, MIN_SECONDS)
    _raise_fd_limit(2 * max(pollers) + 1024)
    token = mint_token(SECRET, OWNER, 3600)
    cases: dict[tuple[str, int], list[Case]] = {}
    with ExitStack() as stack:
        pg_url = stack.enter_context(postgres())
        bench = stack.enter_context(scratch(pg_url))
        # `jobpulse serve` sets granian's connection cap (backpressure) itself, from the fd limit.
        with ThreadPoolExecutor(1) as pool:
            migrating = pool.submit(migrate, pg_url)
            api = stack.enter_context(jobpulse_serve(bench.env, bench.folder / "serve.log")).url
            migrating.result()
        job = seed_job(api, token, bench.redis_url)
        pg = Postgres(stack.enter_context(psycopg.connect(pg_url, autocommit=True)))
        urls = {"A jobpulse": f"{api}/jobs/{job}/progress/", "B PostgreSQL": f"{api}/jobs/{job}/"}
        if not options.smoke:
            for url in urls.values():
                wrk(url, connections=64, seconds=3, token=token)
            _quiet(pg, api)
        # Rounds interleave A and B, so that a noisy spell on the machine hits both alike.
        for _ in range(options.runs):
            for n in pollers:
                for label, url in urls.items():
                    cases.setdefault((label, n), []).append(_case(pg, api, url, n, seconds, token))

    columns = ["app", "pollers", "achieved req/s", "≈ mean answer s", "p99 ms"]
    columns += ["errors", "PG statements/s", "PG statements/req", "app SQL/req", "PG CPU s", "PG CPU"]
    rows = []
    for n in pollers:
        for label in urls:
            runs = cases[(label, n)]
            rps = _median([c.wrk.rps for c in runs])
            rows.append(
                [
                    label,
                    f"{n:,}",
                    f"{rps:,.0f} ({rps / n:.0%} of {n:,})",
                    _answer(_median([_answer_s(c, n, seconds) for c in runs]), seconds),
                    _p99(runs),
                    str(sum(c.wrk.errors for c in runs)),
                    f"{_median([c.statements_per_s for c in runs]):,.0f}",
                    f"{_median([sum(c.per_request.values()) for c in runs]):.2f}",
                    f"{_median([c.app_sql_per_request for c in runs]):.2f}",
                    f"{_median([c.cpu_s for c in runs]):.1f}",
                    f"{_median([100 * c.cpu_s / c.seconds for c in runs]):.0f}%",
                ]
            )

    last = cases[("B PostgreSQL", pollers[-1])][-1]
    breakdown = ", ".join(
        f"`{_shorten(query)}` {calls:.2f}"
        for query, calls in sorted(last.per_request.items(), key=lambda item: -item[1])
    )
    a_statements = {n: sum(c.statements for c in cases[("A jobpulse", n)]) for n in pollers}
    targets = [
        Target(
            "A adds zero statements",
            not any(a_statements.values()),
            ", ".join(f"{count} statements at {n:,} pollers" for n, count in a_statements.items())
            + f" ({options.runs} run(s) of {seconds} s each)",
        )
    ]
    charts = [
        Chart(
            f"PostgreSQL statements/s, {n:,} pollers",
            "statements/s",
            {label: _median([c.statements_per_s for c in cases[(label, n)]]) for label in urls},
        )
        for n in pollers
    ]
    how = (
        "How: one `jobpulse serve` (as shipped: granian, one process) on PostgreSQL (scripts/postgres.sh: "
        "fsync off). Each poller is a wrk connection (`wrk -t2`, Lua `delay()` of 1000 ms): it waits 1 s, "
        "sends a request, waits for the answer, waits 1 s again, and so on, so N pollers offer at most "
        f"N requests/s ({1 - 1 / seconds:.0%} of N in a {seconds} s case, for the first wait), fewer "
        "when answers are slow. "
        f"{options.runs} round(s) of {seconds} s per case, A and B in turn; medians (errors summed). "
        "Statements are PostgreSQL's own count, pg_stat_statements (`calls` before and after each "
        "case, our own queries left out): it sees every statement a client sends, BEGIN and ROLLBACK "
        "included, where the app's counter (jobpulse_sql_statements_total) counts the ORM's statements; "
        "per request is per request the API answered (its /metrics), in-flight ones included. PostgreSQL "
        "CPU is the user+system time of the postmaster and all its processes (psutil). wrk runs with a "
        "30 s answer timeout (its default, 2 s, would count slow answers as errors and leave them out of "
        "the percentiles); an answer still pending when a case ends is not counted, so the mean answer "
        "time comes from the requests made (Little's law). `jobpulse serve` lifts granian's cap on "
        "connections served at once (2,048 by default) to its file descriptor limit, which it raises. "
        "The load generator, the server, Redis and PostgreSQL share the machine's cores "
        "and the machine is noisy: the statement counts are exact, the rates are not. PostgreSQL's "
        f"statements per B request ({pollers[-1]:,} pollers): {breakdown}; and B opened "
        f"{last.sessions_per_request:.2f} new PostgreSQL connections per request (pg_stat_database "
        "`sessions`): the API's connection pool (10, plus 20 overflow connections closed when handed "
        "back) is smaller than the 40 threads that run its sync routes."
    )
    markdown = "\n\n".join([table(columns, rows), how])
    return Section("Database load: N pollers at one request a second", markdown, targets, charts)


if __name__ == "__main__":
    main(run, __doc__, seconds=MIN_SECONDS)
