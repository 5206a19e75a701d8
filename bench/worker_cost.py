"""The worker's cost of reporting progress: CPU per reporter call, Redis writes per job, Redis memory.

    .venv/bin/python bench/worker_cost.py [--runs 3] [--smoke]

(a) A tight loop calls ``Reporter.update(n, total)`` for one job (1,000,000 calls; 10,000 in smoke mode)
    against a real Redis; the accepted writes are counted three ways: the store's results (a thin
    subclass timestamps each write), the record's ``version``, and ``INFO commandstats`` (EVALSHA calls).
(b) ``MEMORY USAGE`` of one realistic RUNNING record with every field, then the ``used_memory`` delta of
    writing 1,000,000 such records (10,000 in smoke mode) through the real Lua write script, pipelined.
"""

from __future__ import annotations

import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
from benchkit import Chart, Options, Section, Target, main, scratch, table

from jobpulse.keys import Keyspace
from jobpulse.progress.record import ProgressUpdate
from jobpulse.progress.reporter import Reporter
from jobpulse.progress.store import ProgressStore, WriteResult
from jobpulse.settings import Settings
from jobpulse.states import State

OWNER, KIND = "user-8f3a2b1c", "spreadsheet_import"
MAX_SECONDS = 2.0  # for 1,000,000 calls
MAX_WRITES_PER_SECOND = 5
MAX_RECORD_BYTES = 400
PIPELINE_BATCH = 1000
REALISTIC = ProgressUpdate(
    State.RUNNING,
    percent=42.5,
    current=425_000,
    total=1_000_000,
    stage="validating",
    message="Processed 425,000 of 1,000,000 rows",
    eta_seconds=12.3,
)


class TimedStore(ProgressStore):
    """The real store, noting when each write went out (the reporter's writes, as Redis saw them)."""

    def __init__(self, client: redis.Redis, keys: Keyspace) -> None:
        super().__init__(client, keys)
        self.sent: list[float] = []

    def write(
        self, job_id: str, update: ProgressUpdate, *, owner: str, kind: str, create: bool = False
    ) -> WriteResult:
        self.sent.append(time.monotonic())
        return super().write(job_id, update, owner=owner, kind=kind, create=create)


def _evalsha_calls(client: redis.Redis) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def _max_in_window(moments: list[float], window: float = 1.0) -> int:
    """The most moments within any half-open ``window``-second span."""
    best, start = 0, 0
    for end, moment in enumerate(moments):
        while moment - moments[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def reporter_loop(client: redis.Redis, keys: Keyspace, calls: int) -> dict[str, float]:
    """One job: PENDING record, RUNNING transition, ``calls`` updates in a tight loop, SUCCESS."""
    store = TimedStore(client, keys)
    job = str(uuid.uuid4())
    store.write(job, ProgressUpdate(State.PENDING), owner=OWNER, kind=KIND, create=True)
    reporter = Reporter(store, job, owner=OWNER, kind=KIND, state=State.RUNNING)  # min_interval 0.2 s
    reporter.transition(State.RUNNING, stage="validating")
    version_before = int(store.read(job)[b"version"])  # type: ignore[index]
    evalsha_before, accepted_before, sent_before = _evalsha_calls(client), reporter.writes, len(store.sent)
    update = reporter.update
    started = time.perf_counter()
    for n in range(1, calls + 1):
        update(n, calls)
    elapsed = time.perf_counter() - started
    loop_writes = reporter.writes - accepted_before
    evalsha = _evalsha_calls(client) - evalsha_before  # INFO is counted apart, under cmdstat_info
    version = int(store.read(job)[b"version"]) - version_before  # type: ignore[index]
    moments = store.sent[sent_before - 1 :]  # the transition's write, then the loop's
    reporter.finish(State.SUCCESS)
    return {
        "seconds": elapsed,
        "ns_per_call": elapsed / calls * 1e9,
        "writes": loop_writes,
        "version": version,
        "evalsha": evalsha,
        "per_second": loop_writes / elapsed,
        "max_in_1s": _max_in_window(moments),
    }


def record_bytes(client: redis.Redis, store: ProgressStore) -> tuple[int, str]:
    """``MEMORY USAGE`` (every element sampled) and encoding of one realistic RUNNING record."""
    job = str(uuid.uuid4())
    store.write(job, ProgressUpdate(State.PENDING), owner=OWNER, kind=KIND, create=True)
    store.write(job, REALISTIC, owner=OWNER, kind=KIND)
    key = store.keys.progress(job)
    size = client.memory_usage(key, samples=0)
    encoding = client.object("encoding", key)
    length = client.strlen(key)
    client.delete(key)
    return int(
        size or 0
    ), f"a {encoding.decode() if isinstance(encoding, bytes) else encoding} string of {length} bytes"


def _send(store: ProgressStore, records: int) -> None:
    for first in range(0, records, PIPELINE_BATCH):
        with store.client.pipeline(transaction=False) as pipe:
            for _ in range(first, min(records, first + PIPELINE_BATCH)):
                keys, argv = store._write_args(
                    str(uuid.uuid4()), REALISTIC, owner=OWNER, kind=KIND, create=False
                )
                store._script(keys=keys, args=argv, client=pipe)
            for reply in pipe.execute():
                assert int(reply[0]) == 1, reply


def _evalsha_usec(client: redis.Redis) -> tuple[int, int]:
    stats: dict[str, Any] = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


def bulk_bytes(client: redis.Redis, store: ProgressStore, records: int) -> dict[str, float]:
    """``used_memory`` delta per record after ``records`` RUNNING records written by pipelined EVALSHA."""
    # Two senders: one packs its next batch while Redis runs the other's (the script is Redis-bound).
    halves = [records - records // 2, records // 2]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(_send, [store, store], [2, 2]))  # open both connections, load the script
        client.flushall()
        time.sleep(0.2)
        before = int(client.info("memory")["used_memory"])
        calls_before, usec_before = _evalsha_usec(client)
        started = time.perf_counter()
        list(pool.map(_send, [store, store], halves))
        seconds = time.perf_counter() - started
    calls, usec = _evalsha_usec(client)
    time.sleep(0.5)  # let an incremental rehash of the keyspace finish
    delta = int(client.info("memory")["used_memory"]) - before
    count = int(client.dbsize())
    with_ttl = int(client.info("keyspace").get("db0", {}).get("expires", 0))
    client.flushall()
    return {
        "records": count,
        "with_ttl": with_ttl,
        "bytes": delta,
        "per_record": delta / count,
        "writes_per_second": count / seconds,
        "redis_usec_per_write": (usec - usec_before) / (calls - calls_before),
    }


def run(options: Options) -> Section:
    """The reporter loop ``options.runs`` times (medians), one record's size, then the bulk memory run."""
    calls = 300_000 if options.smoke else 1_000_000  # smoke: long enough (0.2 s+) for one coalesced write
    records = 10_000 if options.smoke else 1_000_000
    with scratch() as bench:
        settings = Settings(redis_url=bench.redis_url)
        keys = Keyspace.from_settings(settings)
        client = redis.Redis.from_url(bench.redis_url)
        try:
            loops = [reporter_loop(client, keys, calls) for _ in range(options.runs)]
            size, encoding = record_bytes(client, ProgressStore(client, keys))
            bulk = bulk_bytes(client, ProgressStore(client, keys), records)
        finally:
            client.close()

    def median(name: str) -> float:
        return statistics.median(loop[name] for loop in loops)

    seconds = median("seconds")
    per_million = seconds * 1_000_000 / calls
    max_window = max(int(loop["max_in_1s"]) for loop in loops)
    loop_table = table(
        ["calls", "total", "per call", "1M calls (scaled)", "writes (store / version / EVALSHA)",
         "writes/s", "most writes in any 1 s"],
        [[f"{calls:,}", f"{seconds:.3f} s", f"{median('ns_per_call'):.0f} ns", f"{per_million:.2f} s",
          f"{median('writes'):.0f} / {median('version'):.0f} / {median('evalsha'):.0f}",
          f"{median('per_second'):.2f}", f"{max_window}"]],
    )  # fmt: skip
    memory_table = table(
        ["what", "bytes", "how"],
        [
            ["one RUNNING record, every field", f"{size}", f"`MEMORY USAGE key SAMPLES 0` ({encoding})"],
            [
                f"per record, {bulk['records']:,.0f} records",
                f"{bulk['per_record']:.0f}",
                f"`used_memory` delta {bulk['bytes'] / 1024 / 1024:.1f} MiB / records "
                f"({bulk['with_ttl']:,.0f} with a TTL; {bulk['writes_per_second']:,.0f} writes/s pipelined, "
                f"{bulk['redis_usec_per_write']:.0f} µs of Redis CPU per write)",
            ],
        ],
    )
    how = (
        f"**How.** (a) One job in a scratch Redis: a PENDING record, `transition(RUNNING)`, then "
        f"`reporter.update(n, {calls:,})` in a tight loop with the default `min_interval` (0.2 s); median of "
        f"{options.runs} run(s). Writes are counted by the store's results, by the record's `version` and by "
        "`INFO commandstats` (EVALSHA calls, incl. duplicates the script dropped); the 1 s window counts the "
        "transition's write and the loop's by the time each left the worker. (b) One record written as the "
        "reporter writes it (one string: version, owner, updated_at, state, the body's values kind to "
        "eta_seconds as JSON, updated_at as ISO-8601; a TTL); "
        f"then {records:,} such records with fresh UUIDs through the real Lua "
        f"script, EVALSHA pipelined {PIPELINE_BATCH:,} at a time; the `used_memory` delta covers the "
        "records, the keyspace and expires entries (TTL), i.e. everything a record costs."
    )
    jobs_per_core = 1e6 / bulk["redis_usec_per_write"] / MAX_WRITES_PER_SECOND
    redis_cpu = (
        f"Each accepted write costs Redis {bulk['redis_usec_per_write']:.0f} µs of CPU (the script reads "
        "the record, checks the rules, writes it whole and publishes its body): at 5 writes a second, one "
        f"Redis core keeps up with about {jobs_per_core:,.0f} jobs reporting at once."
    )
    markdown = "\n\n".join(["**(a) Reporter in a tight loop**", loop_table, "**(b) Redis memory**",
                            memory_table, redis_cpu, how])  # fmt: skip
    targets = [
        Target(
            "1,000,000 reporter calls in under 2 s",
            per_million < MAX_SECONDS,
            f"{per_million:.2f} s" + ("" if calls == 1_000_000 else f" (scaled from {calls:,} calls)"),
        ),
        Target(
            "at most 5 Redis writes per second per job",
            max_window <= MAX_WRITES_PER_SECOND,
            f"at most {max_window} in any 1 s; {median('per_second'):.2f}/s on average",
        ),
        Target("a RUNNING record under 400 bytes", size < MAX_RECORD_BYTES, f"{size} bytes ({encoding})"),
    ]
    charts = [
        Chart("Reporter: 1,000,000 calls", "s", {"measured": per_million, "target": MAX_SECONDS}),
        Chart(
            "Redis bytes per progress record",
            "bytes",
            {"MEMORY USAGE (one)": size, f"used_memory / record ({records:,})": bulk["per_record"]},
        ),
    ]
    return Section("Worker side: the cost of reporting", markdown, targets, charts)


if __name__ == "__main__":
    main(run, __doc__)
