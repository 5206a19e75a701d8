"""Poll throughput, side by side: jobpulse's progress endpoint (real app, real token check) against the
ceiling, a bare ASGI app doing the same single Redis read (bench/bare_app.py), on the same server.

    .venv/bin/python bench/poll.py [--connections 64 256] [--runs 3] [--seconds 5]

Starts its own Redis, seeds one progress record, serves each app with granian (one worker), loads it
with wrk (Debian's `wrk`), and prints a markdown table of medians. Needs `wrk` and `redis-server`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import redis
from benchkit import SECRET, scratch

from jobpulse.auth import mint_token
from jobpulse.keys import Keyspace
from jobpulse.progress.record import ProgressUpdate
from jobpulse.progress.store import ProgressStore
from jobpulse.settings import Settings
from jobpulse.states import State

APPS = {"jobpulse": "jobpulse.api.app:app_from_env", "bare ASGI": "bare_app:app_from_env"}
WRK_LUA = 'wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")\n'


def _wrk(url: str, connections: int, seconds: int, script: Path, env: dict[str, str]) -> tuple[float, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert p99 is not None
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    if "Non-2xx" in out or "Socket errors" in out:
        print(out, file=sys.stderr)
    return rps, float(p99.group(1)) * scale


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")

    with scratch() as bench:
        env = dict(
            bench.env,
            PYTHONPATH=str(Path(__file__).parent),
            TOKEN=mint_token(SECRET, "bench", 3600),
        )
        settings = Settings(redis_url=bench.redis_url, secret_key=SECRET)
        client = redis.Redis.from_url(bench.redis_url)
        job_id = str(uuid.uuid4())
        update = ProgressUpdate(
            State.RUNNING,
            percent=42.5,
            current=4250,
            total=10000,
            stage="validating",
            message="Processed 4,250 of 10,000 rows",
            eta_seconds=12.3,
        )
        ProgressStore(client, Keyspace.from_settings(settings)).write(
            job_id, update, owner="bench", kind="spreadsheet_import"
        )
        script = bench.folder / "auth.lua"
        script.write_text(WRK_LUA)
        results: dict[tuple[str, int], list[tuple[float, float]]] = {}
        for name, target in APPS.items():
            port = 18100 + len(results)
            server = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "granian"),
                    "--interface",
                    "asgi",
                    "--factory",
                    "--port",
                    str(port),
                    "--no-ws",
                    "--log-level",
                    "warning",
                    target,
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
            url = f"http://127.0.0.1:{port}/jobs/{job_id}/progress/"
            try:
                for _ in range(100):
                    try:
                        httpx.get(url, headers={"Authorization": f"Bearer {env['TOKEN']}"}, timeout=1)
                        break
                    except httpx.TransportError:
                        time.sleep(0.1)
                _wrk(url, 64, 2, script, env)  # warm-up
                for connections in args.connections:
                    results[(name, connections)] = [
                        _wrk(url, connections, args.seconds, script, env) for _ in range(args.runs)
                    ]
            finally:
                server.terminate()
                server.wait(10)
        client.close()

    print(f"| app | connections | requests/s (median of {args.runs}) | p99 ms | vs bare |")
    print("|---|---|---|---|---|")
    for connections in args.connections:
        ceiling = statistics.median(r for r, _ in results[("bare ASGI", connections)])
        for name in APPS:
            runs = results[(name, connections)]
            rps = statistics.median(r for r, _ in runs)
            p99 = statistics.median(p for _, p in runs)
            print(f"| {name} | {connections} | {rps:,.0f} | {p99:.1f} | {rps / ceiling:.2f}x |")


if __name__ == "__main__":
    main()
