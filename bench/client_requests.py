"""Requests a client makes to follow one job: the adaptive clients against a fixed 1-second poller.

    .venv/bin/python bench/client_requests.py [--duration 60] [--runs 1]

Starts its own Redis and API server (granian), then plays the same scripted job three times at once,
one job per client, so every client sees the same timeline through the real API:

    queued (PENDING)      8% of the duration, no writes
    reading (RUNNING)    12%, one write at the start, then silence (no percent yet)
    validating (RUNNING) 70%, percent 0 -> 100 written 5 times a second (the reporter's cap)
    saving (RUNNING)     10%, one write, then silence
    SUCCESS

The clients: the originating system's poller (GET every second, as its report describes), the Python
SDK's `Client.watch`, and the browser client's `pollExcelJob` run by Node.js (clients/js/scripts/
watch.mjs). Prints a markdown table: requests, how many were answered 304, and how long after the
SUCCESS write each client saw it. Needs `redis-server` and `node`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis
from benchkit import SECRET, scratch, wait_http

from jobpulse.auth import mint_token
from jobpulse.client import Client
from jobpulse.embedded import free_port
from jobpulse.keys import Keyspace
from jobpulse.progress.record import ProgressUpdate
from jobpulse.progress.store import ProgressStore
from jobpulse.settings import Settings
from jobpulse.states import State

OWNER = "bench"
WATCH_JS = Path(__file__).resolve().parent.parent / "clients" / "js" / "scripts" / "watch.mjs"


class CountingTransport(httpx.HTTPTransport):
    """Counts the answers a client got, by status."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: Counter[int] = Counter()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.statuses[response.status_code] += 1
        return response


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
    steps = int(0.70 * duration * 5)
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
    done = subprocess.run(
        ["node", str(WATCH_JS), "--base-url", url, "--token", token, "--job", job_id],
        capture_output=True,
        text=True,
        check=True,
    )
    seen_at = time.monotonic()
    last = json.loads(done.stdout.splitlines()[-1])
    out.update(statuses=Counter({int(k): v for k, v in last["statuses"].items()}), seen_at=seen_at)


CLIENTS: dict[str, Callable[[str, str, str, dict[str, Any]], None]] = {
    "fixed 1 s poller (the originating system)": fixed_poller,
    "Python SDK `Client.watch`": sdk_watch,
    "browser client `pollExcelJob` (Node.js)": js_watch,
}


def run_once(url: str, token: str, store: ProgressStore, duration: float) -> dict[str, dict[str, Any]]:
    job_ids = {name: str(uuid.uuid4()) for name in CLIENTS}
    for job_id in job_ids.values():
        store.write(job_id, ProgressUpdate(State.PENDING, percent=0), owner=OWNER, kind="spreadsheet_import")
    results: dict[str, dict[str, Any]] = {name: {} for name in CLIENTS}
    finished: dict[str, float] = {}
    threads = [threading.Thread(target=play, args=(store, list(job_ids.values()), duration, finished))]
    threads += [
        threading.Thread(target=client, args=(url, token, job_ids[name], results[name]))
        for name, client in CLIENTS.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results.values():
        result["lag"] = result["seen_at"] - finished["at"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds the scripted job lasts")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("node") is None:
        sys.exit("node is not installed")
    with scratch() as bench:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        jobpulse = [sys.executable, "-m", "jobpulse"]
        subprocess.run([*jobpulse, "migrate"], env=bench.env, check=True, capture_output=True)
        server = subprocess.Popen(
            [*jobpulse, "serve", "--port", str(port)],
            env=bench.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_http(f"{url}/healthz")
            client = redis.Redis.from_url(bench.redis_url)
            keys = Keyspace.from_settings(Settings(redis_url=bench.redis_url, secret_key=SECRET))
            token = mint_token(SECRET, OWNER, 3600)
            runs = [
                run_once(url, token, ProgressStore(client, keys), args.duration) for _ in range(args.runs)
            ]
            client.close()
        finally:
            server.terminate()
            server.wait(10)

    fixed = statistics.median(sum(run[next(iter(CLIENTS))]["statuses"].values()) for run in runs)
    print(f"A {args.duration:.0f}-second job, median of {args.runs} run(s):\n")
    print("| client | requests | answered 304 | vs fixed poller | saw SUCCESS after |")
    print("|---|---|---|---|---|")
    for name in CLIENTS:
        requests = statistics.median(sum(run[name]["statuses"].values()) for run in runs)
        not_modified = statistics.median(run[name]["statuses"][304] for run in runs)
        lag = statistics.median(run[name]["lag"] for run in runs)
        print(f"| {name} | {requests:.0f} | {not_modified:.0f} | {requests / fixed:.2f}x | {lag:.2f} s |")


if __name__ == "__main__":
    main()
