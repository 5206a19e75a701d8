"""Batch reads: ``POST /progress/batch/`` with 100 ids against single polls, on one ``jobpulse serve``
(as shipped), loaded by wrk -t2 on the same machine; ids answered per second and server CPU per id.

.venv/bin/python bench/batch.py [--runs 3] [--seconds 10] [--smoke]
"""

from __future__ import annotations

import statistics
from contextlib import ExitStack

import orjson
from benchkit import (
    OWNER,
    SECRET,
    Chart,
    Options,
    Section,
    Server,
    Target,
    WrkResult,
    jobpulse_serve,
    main,
    migrate,
    scratch,
    seed_job,
    table,
    wrk,
)

from jobpulse.auth import mint_token

IDS = 100  # ids per batch request
CONNECTIONS = 64
WARMUP_S = 3


def _load(server: Server, url: str, seconds: float, token: str, lua: str) -> tuple[WrkResult, float]:
    """One wrk run; returns its result and the server's CPU seconds over it."""
    cpu = server.cpu_seconds()
    result = wrk(url, connections=CONNECTIONS, seconds=seconds, token=token, extra_lua=lua)
    return result, server.cpu_seconds() - cpu


def run(options: Options) -> Section:
    token = mint_token(SECRET, OWNER, 3600)
    single: list[tuple[WrkResult, float]] = []
    batch: list[tuple[WrkResult, float]] = []
    with ExitStack() as stack:
        bench = stack.enter_context(scratch())
        migrate(bench.env["DATABASE_URL"])
        server = stack.enter_context(jobpulse_serve(bench.env, bench.folder / "serve.log"))
        ids = [seed_job(server.url, token, bench.redis_url) for _ in range(IDS)]
        body = orjson.dumps({"ids": ids}).decode()
        post = 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        post += f"wrk.body = {_lua_string(body)}\n"
        poll_url, batch_url = f"{server.url}/jobs/{ids[0]}/progress/", f"{server.url}/progress/batch/"
        if not options.smoke:
            wrk(poll_url, connections=CONNECTIONS, seconds=WARMUP_S, token=token)
            wrk(batch_url, connections=CONNECTIONS, seconds=WARMUP_S, token=token, extra_lua=post)
        for _ in range(options.runs):  # interleaved, so that a noisy spell hits both alike
            single.append(_load(server, poll_url, options.seconds, token, ""))
            batch.append(_load(server, batch_url, options.seconds, token, post))

    polls = statistics.median(r.rps for r, _ in single)
    ids_per_s = IDS * statistics.median(r.rps for r, _ in batch)
    poll_cpu = statistics.median(1e6 * cpu / max(r.requests, 1) for r, cpu in single)
    id_cpu = statistics.median(1e6 * cpu / max(IDS * r.requests, 1) for r, cpu in batch)
    errors = sum(r.errors for r, _ in single + batch)
    rows = [
        ["single polls", f"{polls:,.0f}", f"{poll_cpu:,.1f}", "1.00x", str(sum(r.errors for r, _ in single))],
        [
            f"batches of {IDS} ids",
            f"{ids_per_s:,.0f}",
            f"{id_cpu:,.1f}",
            f"{id_cpu / poll_cpu:.3f}x",
            str(sum(r.errors for r, _ in batch)),
        ],
    ]
    columns = ["requests", "ids answered/s", "server CPU us/id", "CPU per id vs a poll", "errors"]
    targets = [
        Target(
            f"an id in a batch of {IDS} costs at most a tenth of a single poll",
            ids_per_s >= 10 * polls and errors == 0,
            f"{ids_per_s:,.0f} ids/s vs {polls:,.0f} polls/s: {ids_per_s / polls:.1f}x; "
            f"CPU {id_cpu:,.1f} vs {poll_cpu:,.1f} us ({id_cpu / poll_cpu:.3f}x); {errors} errors",
        )
    ]
    how = (
        f"How: one `jobpulse serve` (as shipped, SQLite) with {IDS} RUNNING jobs of one owner, each "
        "submitted through `POST /jobs/` and moved to RUNNING as a worker would. `wrk -t2 "
        f"-c{CONNECTIONS}` with a valid token, {options.runs} interleaved round(s) of {options.seconds} s: "
        f"single `GET /jobs/{{id}}/progress/` polls, then `POST /progress/batch/` with the {IDS} ids "
        "(a Lua script sets the method and body); medians. Server CPU is the user + system time of the "
        "server's processes (psutil) over the run, per id answered."
    )
    bars = {"single polls": polls, f"batches of {IDS}": ids_per_s}
    charts = [Chart("Progress reads answered per second", "ids/s", bars)]
    markdown = "\n\n".join([table(columns, rows), how])
    return Section(f"Batch progress reads ({IDS} ids) vs single polls", markdown, targets, charts)


def _lua_string(text: str) -> str:
    """``text`` as a Lua long string literal (JSON ids hold no ``]]``)."""
    return f"[[{text}]]"


if __name__ == "__main__":
    main(run, __doc__)
