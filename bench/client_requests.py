"""Requests and bytes a client spends following one job: the adaptive clients against a fixed 1 s poller.

    .venv/bin/python bench/client_requests.py [--duration 60] [--runs 1] [--smoke]

Starts its own Redis and API server, then plays the same scripted job once per client, all at once, so
every client sees the same timeline through the real API:

    queued (PENDING)      8% of the duration, no writes
    reading (RUNNING)    12%, one write at the start, then silence (no percent yet)
    validating (RUNNING) 70%, percent 0 -> 100 written 5 times a second (the reporter's cap)
    saving (RUNNING)     10%, one write, then silence
    SUCCESS

The clients: the originating system's poller (GET every second, as its report describes), the Python
SDK's `Client.watch`, and the browser client's `pollExcelJob` run by Node.js (clients/js/scripts/
watch.mjs). Each talks to the API through its own byte-counting TCP proxy, so "bytes" are what crossed
the wire both ways (requests and answers, headers included; a 304 has no body). Needs `node`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import redis
from benchkit import ROOT, SECRET, Chart, Options, Section, Target, granian, scratch, table

from jobpulse.auth import mint_token
from jobpulse.client import Client
from jobpulse.keys import Keyspace
from jobpulse.progress.record import ProgressUpdate
from jobpulse.progress.store import ProgressStore
from jobpulse.settings import Settings
from jobpulse.states import State

OWNER = "bench"
WATCH_JS = ROOT / "clients" / "js" / "scripts" / "watch.mjs"
FIXED = "fixed 1 s poller (the originating system)"


class CountingTransport(httpx.HTTPTransport):
    """Counts the answers a client got, by status."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: Counter[int] = Counter()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.statuses[response.status_code] += 1
        return response


class Proxies:
    """One byte-counting TCP proxy per client, in front of the API, on an event loop thread."""

    def __init__(self, upstream_port: int, names: list[str]) -> None:
        self.upstream_port = upstream_port
        self.bytes = dict.fromkeys(names, 0)
        self.ports: dict[str, int] = {}
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        for name in names:
            server = asyncio.run_coroutine_threadsafe(self._serve(name), self.loop).result()
            self.ports[name] = server.sockets[0].getsockname()[1]

    async def _serve(self, name: str) -> asyncio.Server:
        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    self.bytes[name] += len(data)
                    writer.write(data)
                    await writer.drain()
            except ConnectionError:
                pass
            finally:
                writer.close()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        return await asyncio.start_server(handle, "127.0.0.1", 0)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def play(store: ProgressStore, job_ids: list[str], duration: float, finished: dict[str, float]) -> None:
    """Drive every job through the timeline at once; record when SUCCESS was written."""

    def write(update: ProgressUpdate) -> None:
        for job_id in job_ids:
            store.write(job_id, update, owner=OWNER, kind="spreadsheet_import")

    start = time.monotonic()

    def until(fraction: float) -> None:
        time.sleep(max(0.0, start + fraction * duration - time.monotonic()))

    until(0.08)
    write(ProgressUpdate(State.RUNNING, percent=0, stage="reading", message="Reading the file"))
    until(0.20)
    total = 100_000
    steps = max(1, int(0.70 * duration * 5))
    for step in range(1, steps + 1):
        done = total * step // steps
        write(
            ProgressUpdate(
                State.RUNNING,
                percent=round(100 * done / total, 1),
                current=done,
                total=total,
                stage="validating",
                message=f"Validated {done:,} of {total:,} rows",
                eta_seconds=round((steps - step) / 5 + 0.1 * duration, 1),
            )
        )
        until(0.20 + 0.70 * step / steps)
    write(ProgressUpdate(State.RUNNING, percent=100, current=total, total=total, stage="saving"))
    until(1.0)
    write(ProgressUpdate(State.SUCCESS, percent=100, current=total, total=total, message="Imported"))
    finished["at"] = time.monotonic()


def fixed_poller(url: str, token: str, job_id: str, out: dict[str, Any]) -> None:
    """The originating system's poller: GET the progress every second until a terminal state."""
    statuses: Counter[int] = Counter()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
        while True:
            response = http.get(f"/jobs/{job_id}/progress/")
            statuses[response.status_code] += 1
            if response.json()["terminal"]:
                break
            time.sleep(1.0)
    out.update(statuses=statuses, seen_at=time.monotonic())


def sdk_watch(url: str, token: str, job_id: str, out: dict[str, Any]) -> None:
    transport = CountingTransport()
    with Client(url, token=token, transport=transport) as client:
        client.wait(job_id)
    out.update(statuses=transport.statuses, seen_at=time.monotonic())


def js_watch(url: str, token: str, job_id: str, out: dict[str, Any]) -> None:
    argv = ["node", str(WATCH_JS), "--base-url", url, "--token", token, "--job", job_id]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    seen_at = time.monotonic()
    last = json.loads(done.stdout.splitlines()[-1])
    out.update(statuses=Counter({int(k): v for k, v in last["statuses"].items()}), seen_at=seen_at)


CLIENTS: dict[str, Callable[[str, str, str, dict[str, Any]], None]] = {
    FIXED: fixed_poller,
    "Python SDK `Client.watch`": sdk_watch,
    "browser client `pollExcelJob` (Node.js)": js_watch,
}


def run_once(
    proxies: Proxies, token: str, store: ProgressStore, duration: float
) -> dict[str, dict[str, Any]]:
    job_ids = {name: str(uuid.uuid4()) for name in CLIENTS}
    for job_id in job_ids.values():
        store.write(job_id, ProgressUpdate(State.PENDING, percent=0), owner=OWNER, kind="spreadsheet_import")
    results: dict[str, dict[str, Any]] = {name: {} for name in CLIENTS}
    before = dict(proxies.bytes)
    finished: dict[str, float] = {}
    threads = [threading.Thread(target=play, args=(store, list(job_ids.values()), duration, finished))]
    for name, client in CLIENTS.items():
        url = f"http://127.0.0.1:{proxies.ports[name]}"
        threads.append(threading.Thread(target=client, args=(url, token, job_ids[name], results[name])))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name, result in results.items():
        result["lag"] = result["seen_at"] - finished["at"]
        result["bytes"] = proxies.bytes[name] - before[name]
    return results


@contextmanager
def _api() -> Iterator[tuple[Proxies, ProgressStore]]:
    with scratch() as bench:
        subprocess.run(
            [sys.executable, "-m", "jobpulse", "migrate"], env=bench.env, check=True, capture_output=True
        )
        with granian("jobpulse.api.app:app_from_env", bench.env) as url:
            proxies = Proxies(httpx.URL(url).port or 80, list(CLIENTS))
            client = redis.Redis.from_url(bench.redis_url)
            keys = Keyspace.from_settings(Settings(redis_url=bench.redis_url, secret_key=SECRET))
            try:
                yield proxies, ProgressStore(client, keys)
            finally:
                client.close()
                proxies.close()


def run(options: Options, duration: float | None = None) -> Section:
    """Follow the scripted job with each client ``options.runs`` times; medians."""
    duration = duration or (4.0 if options.smoke else 60.0)
    token = mint_token(SECRET, OWNER, 3600)
    with _api() as (proxies, store):
        runs = [run_once(proxies, token, store, duration) for _ in range(options.runs)]

    def median(name: str, value: Callable[[dict[str, Any]], float]) -> float:
        return statistics.median(value(run[name]) for run in runs)

    fixed_requests = median(FIXED, lambda r: sum(r["statuses"].values()))
    fixed_bytes = median(FIXED, lambda r: r["bytes"])
    rows = []
    requests: dict[str, float] = {}
    for name in CLIENTS:
        requests[name] = median(name, lambda r: sum(r["statuses"].values()))
        sent = median(name, lambda r: r["bytes"])
        rows.append(
            [
                name,
                f"{requests[name]:.0f}",
                f"{median(name, lambda r: r['statuses'][304]):.0f}",
                f"{requests[name] / fixed_requests:.2f}x",
                f"{sent / 1024:.1f} KiB",
                f"{sent / fixed_bytes:.2f}x",
                f"{median(name, lambda r: r['lag']):.2f} s",
            ]
        )
    columns = [
        "client",
        "requests",
        "answered 304",
        "vs fixed",
        "bytes (both ways)",
        "vs fixed",
        "saw SUCCESS after",
    ]
    markdown = "\n\n".join(
        [
            f"A scripted {duration:.0f}-second job (queued 8%, silent 12%, moving 70%, silent 10%), "
            f"median of {options.runs} run(s); each client follows its own copy of the job, all at once.",
            table(columns, rows),
            "Bytes are counted by a TCP proxy in front of the API, per client. The adaptive clients trade "
            "latency for requests in the silent phases: they back off while nothing changes, so they see "
            "the end up to one grown interval later than a 1 s poller.",
        ]
    )
    adaptive = [n for n in CLIENTS if n != FIXED]
    targets = [
        Target(
            f"{name}: fewer requests than the fixed poller",
            requests[name] < fixed_requests,
            f"{requests[name]:.0f} vs {fixed_requests:.0f}",
        )
        for name in adaptive
    ]
    chart = Chart(
        f"Requests to follow a {duration:.0f} s job",
        "requests",
        {n.split(" `")[0]: requests[n] for n in CLIENTS},
    )
    return Section("Adaptive polling: requests per watched job", markdown, targets, [chart])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=None, help="seconds the scripted job lasts")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    options = Options.for_smoke() if args.smoke else Options(runs=args.runs)
    print(run(options, args.duration).markdown)


if __name__ == "__main__":
    main()
