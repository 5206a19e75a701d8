"""A soak: jobs of every kind through the real API and two workers while workers die and Redis restarts;
then every job must have ended, exactly once.

    .venv/bin/python bench/soak.py [--jobs 10] [--duration 180] [--seed 1] [--postgres]

Not in CI nor in ``make bench``: it takes minutes and its faults are random. It starts its own Redis (no
persistence: a restart comes back empty), database (SQLite, or a throwaway PostgreSQL with
``--postgres``), API (``jobpulse serve``) and two workers (``jobpulse worker --concurrency 1``). For
``--duration`` seconds it submits ``--jobs`` jobs of each kind (a CSV import, an OCR of a small PNG with
text, a tiny MP4 made with ffmpeg's ``testsrc``) from three owners at random moments, while it SIGKILLs a
worker's pool child or a whole worker (then starts a new one) every few seconds, and restarts Redis
``--redis-restarts`` times. Then it waits (at most ``--deadline`` seconds) for every job to end, and
prints a table. It exits 1 when a number that must be 0 is not:

- lost: an accepted job with no database record, or one not ended by the deadline;
- duplicated: a job seen ending twice (a second, different terminal state, or an active state after its
  terminal one, in the progress writes Redis published), or an import whose rows are not each stored once;
- stuck: a job whose progress record (what clients poll) is not terminal by the deadline, or disagrees
  with its database record.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import redis
from benchkit import SECRET, machine, migrate, postgres, table, wait_http
from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import text

from jobpulse.auth import mint_token
from jobpulse.db.engine import create_db_engine
from jobpulse.db.repository import JobRepository, VideoRepository
from jobpulse.embedded import RedisServer, free_port

OWNERS = ("soak-ada", "soak-grace", "soak-linus")
KINDS = ("spreadsheet_import", "ai_inference", "video")
ACTIVE = {"PENDING", "RUNNING", "PROCESSING", "FALLBACK_TO_GPU", "UNKNOWN"}
# Short leases and a frequent reaper, so dead workers' jobs come back within seconds; a visibility timeout
# short enough that Celery itself also redelivers some of a dead worker's messages during a soak: the
# duplicates must be harmless.
WORKER_ENV = {
    "JOBPULSE_JOB_LOCK_SECONDS": "3",
    "JOBPULSE_REAPER_INTERVAL_SECONDS": "1",
    "JOBPULSE_JOB_TIME_LIMIT_SECONDS": "120",
    "JOBPULSE_VISIBILITY_TIMEOUT_SECONDS": "150",
    "JOBPULSE_OCR_GPU_WAIT_SECONDS": "60",
    "JOBPULSE_OCR_THREADS": "1",
    "OMP_THREAD_LIMIT": "1",
}


# -- inputs ------------------------------------------------------------------------------------------


def csv_input(rng: random.Random) -> bytes:
    rows = rng.randint(20_000, 150_000)
    return b"id,name,amount\n" + b"".join(b"%d,person %d,%d.5\n" % (n, n, n % 997) for n in range(rows))


def png_input(rng: random.Random) -> bytes:
    """Two lines of dark text on white, as a scan would show them."""
    image = Image.new("L", (720, 160), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=28)
    draw.text((24, 30), f"Invoice {rng.randint(1000, 9999)} paid in full", fill=0, font=font)
    draw.text((24, 90), f"Total due {rng.randint(10, 999)} euros", fill=0, font=font)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def mp4_input(folder: Path, seconds: int) -> bytes:
    """A 320x240 test pattern with a tone (the worker makes one 240p rendition and a thumbnail)."""
    path = folder / f"clip-{seconds}.mp4"
    if not path.exists():
        subprocess.run(
            [
                *("ffmpeg", "-hide_banner", "-loglevel", "error", "-y"),
                *("-f", "lavfi", "-i", f"testsrc=size=320x240:rate=25:duration={seconds}"),
                *("-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", "aac"),
                *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-shortest", str(path)),
            ],
            check=True,
        )
    return path.read_bytes()


# -- services ----------------------------------------------------------------------------------------


class Service:
    """A jobpulse command in its own process group, its output appended to ``log``."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.argv, self.env, self.log = argv, env, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, ready: bytes | None = None) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while ready is not None and ready not in self.log.read_bytes()[offset:]:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.argv[3]} did not start:\n" + self.log.read_text()[-3000:])
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash would."""
        if self.process is not None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    def pool_children(self) -> list[psutil.Process]:
        if self.process is None:
            return []
        with suppress(psutil.Error):
            return psutil.Process(self.process.pid).children()
        return []


class EventWatcher:
    """Follows every accepted progress write (Redis publishes each on ``ev:{id}``), across Redis
    restarts, and notes any job seen ending twice or moving again after its end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.terminal: dict[str, str] = {}  # job id -> its first terminal state seen
        self.violations: dict[str, list[str]] = defaultdict(list)
        self.events = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with redis.Redis.from_url(self.url) as client:
                    pubsub = client.pubsub()
                    try:
                        pubsub.psubscribe("jp:ev:*")
                        while not self._stop.is_set():
                            message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
                            if message is not None:
                                self._note(message["channel"].decode().rsplit(":", 1)[1], message["data"])
                    finally:
                        pubsub.close()
            except redis.RedisError:
                self._stop.wait(0.2)  # Redis is restarting: subscribe again when it is back

    def _note(self, job_id: str, data: bytes) -> None:
        self.events += 1
        state = orjson.loads(data)["state"]
        first = self.terminal.get(job_id)
        if first is None:
            if state not in ACTIVE:
                self.terminal[job_id] = state
        elif state != first:
            self.violations[job_id].append(f"{first} then {state}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


# -- the soak ----------------------------------------------------------------------------------------


@dataclass
class Submitted:
    kind: str
    owner: str
    job_id: str


@dataclass
class Chaos:
    """What was done to the system, and when (seconds since the start)."""

    log: list[tuple[float, str]] = field(default_factory=list)

    def count(self, prefix: str) -> int:
        return sum(1 for _, what in self.log if what.startswith(prefix))


class Soak:
    def __init__(self, args: argparse.Namespace, folder: Path, database_url: str) -> None:
        self.args = args
        self.folder = folder
        self.rng = random.Random(args.seed)
        self.redis = RedisServer(folder / "redis")
        self.database_url = database_url
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}"
        env = dict(
            os.environ,
            REDIS_URL=self.redis.url,
            DATABASE_URL=database_url,
            JOBPULSE_SECRET_KEY=SECRET,
            JOBPULSE_DATA_DIR=str(folder / "data"),
        )
        me = [sys.executable, "-m", "jobpulse"]
        self.api = Service([*me, "serve", "--port", str(self.port)], env, folder / "api.log")
        self.workers = [
            Service([*me, "worker", "--concurrency", "1"], env | WORKER_ENV, folder / f"worker-{n}.log")
            for n in range(2)
        ]
        self.tokens = {owner: mint_token(SECRET, owner, 6 * 3600) for owner in OWNERS}
        self.submitted: list[Submitted] = []
        self.refused = 0
        self.chaos = Chaos()
        self.started = time.monotonic()
        self.stop = threading.Event()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # Submissions -----------------------------------------------------------------------------------

    def plan(self) -> list[tuple[float, str, str, bytes]]:
        """(when, kind, owner, input) for every job, spread over the first 60% of the duration."""
        clips = {seconds: mp4_input(self.folder, seconds) for seconds in (2, 4, 6)}
        jobs = []
        for kind in KINDS:
            for _ in range(self.args.jobs):
                when = self.rng.uniform(0, 0.6 * self.args.duration)
                owner = self.rng.choice(OWNERS)
                if kind == "spreadsheet_import":
                    content = csv_input(self.rng)
                elif kind == "ai_inference":
                    content = png_input(self.rng)
                else:
                    content = clips[self.rng.choice(list(clips))]
                jobs.append((when, kind, owner, content))
        return sorted(jobs, key=lambda job: job[0])

    def submit(self, client: httpx.Client, kind: str, owner: str, content: bytes) -> None:
        """Submit as a client would: on 503 or 429, again after Retry-After (for at most 60 s)."""
        auth = {"Authorization": f"Bearer {self.tokens[owner]}"}
        if kind == "video":
            path, data, name = "/media/videos/", {}, "clip.mp4"
        else:
            path, data, name = (
                "/jobs/",
                {"kind": kind},
                ("data.csv" if kind == "spreadsheet_import" else "page.png"),
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                reply = client.post(path, headers=auth, data=data, files={"file": (name, content)})
            except httpx.TransportError:  # the API could not be reached: nothing was accepted
                time.sleep(1)
                continue
            if reply.status_code == 202:
                self.submitted.append(Submitted(kind, owner, reply.json()["id"]))
                return
            if reply.status_code not in (429, 503):
                raise RuntimeError(f"submission answered {reply.status_code}: {reply.text[:300]}")
            time.sleep(min(5.0, float(reply.headers.get("retry-after", "1"))))
        self.refused += 1

    def submitter(self) -> None:
        with httpx.Client(base_url=self.api_url, timeout=30) as client:
            for when, kind, owner, content in self.plan():
                if self.stop.wait(max(0.0, when - self.elapsed())):
                    return
                self.submit(client, kind, owner, content)

    # Faults ----------------------------------------------------------------------------------------

    def busy(self) -> list[tuple[int, psutil.Process]]:
        """(worker, pool child) pairs whose child used CPU in the last 0.2 s: most likely running a job."""

        def cpu(process: psutil.Process) -> float:
            with suppress(psutil.Error):
                times = process.cpu_times()
                return float(times.user + times.system + times.children_user + times.children_system)
            return -1.0

        children = [(n, child) for n, worker in enumerate(self.workers) for child in worker.pool_children()]
        before = [cpu(child) for _, child in children]
        self.stop.wait(0.2)
        return [pair for pair, was in zip(children, before, strict=True) if 0 <= was < cpu(pair[1])]

    def fault(self) -> None:
        redis_due = self.chaos.count("restart Redis") < self.args.redis_restarts and (
            self.elapsed()
            > (self.chaos.count("restart Redis") + 1) * self.args.duration / (self.args.redis_restarts + 1)
        )
        busy = self.busy()
        # Most faults strike a worker that is running a job (a kill of an idle one tests little).
        worker_index, child = (
            self.rng.choice(busy) if busy and self.rng.random() < 0.8 else (self.rng.randrange(2), None)
        )
        worker = self.workers[worker_index]
        which = "busy" if child is not None else "idle"
        if redis_due:
            down = self.rng.uniform(1, 6)
            self.chaos.log.append((self.elapsed(), f"restart Redis (down {down:.1f} s)"))
            self.redis.stop()
            self.stop.wait(down)
            self.redis.start()
        elif self.rng.random() < 0.7:
            children = [child] if child is not None else worker.pool_children()
            if children:
                self.rng.choice(children).kill()
                self.chaos.log.append((self.elapsed(), f"kill pool child ({which}) of worker {worker_index}"))
            else:
                self.chaos.log.append((self.elapsed(), f"no pool child in worker {worker_index}"))
        else:
            self.chaos.log.append((self.elapsed(), f"kill worker ({which}) {worker_index}"))
            worker.kill()
            self.stop.wait(self.rng.uniform(0.5, 3))
            worker.start(b"ready.")

    def faults(self) -> None:
        while not self.stop.wait(self.rng.uniform(2, 6)) and self.elapsed() < self.args.duration:
            self.fault()

    # The end ---------------------------------------------------------------------------------------

    def progress(self, client: httpx.Client) -> dict[str, dict[str, Any]]:
        """Every submitted job's progress body, as its owner reads it (the batch endpoint)."""
        found: dict[str, dict[str, Any]] = {}
        for owner in OWNERS:
            ids = [job.job_id for job in self.submitted if job.owner == owner]
            for start in range(0, len(ids), 500):
                reply = client.post(
                    "/progress/batch/",
                    headers={"Authorization": f"Bearer {self.tokens[owner]}"},
                    json={"ids": ids[start : start + 500]},
                )
                if reply.status_code == 200:
                    found.update(reply.json()["items"])
        return found

    def records(self) -> dict[str, Any]:
        engine = create_db_engine(self.database_url)
        try:
            jobs, videos = JobRepository(engine), VideoRepository(engine)
            return {
                job.job_id: (videos if job.kind == "video" else jobs).get(job.job_id)
                for job in self.submitted
            }
        finally:
            engine.dispose()

    def wait_for_ends(self) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        deadline = time.monotonic() + self.args.deadline
        with httpx.Client(base_url=self.api_url, timeout=30) as client:
            while True:
                records, bodies = self.records(), self.progress(client)
                ended = all(
                    record is not None
                    and record.state not in ACTIVE
                    and bodies.get(job_id, {}).get("state") == record.state
                    for job_id, record in records.items()
                )
                if ended or time.monotonic() > deadline:
                    return records, bodies
                time.sleep(1)

    def row_problems(self, records: dict[str, Any]) -> dict[str, str]:
        """Imports whose stored rows are not each stored once, as their result says."""
        problems: dict[str, str] = {}
        engine = create_db_engine(self.database_url)
        query = text("SELECT count(*), count(DISTINCT row_number) FROM import_rows WHERE job_id = :id")
        try:
            with engine.connect() as connection:
                for job in self.submitted:
                    record = records.get(job.job_id)
                    if job.kind != "spreadsheet_import" or record is None:
                        continue
                    total, distinct = connection.execute(query, {"id": job.job_id}).one()
                    expected = (
                        (record.result or {}).get("rows_imported", 0) if record.state == "SUCCESS" else 0
                    )
                    if total != distinct or total != expected:
                        problems[job.job_id] = f"{total} rows ({distinct} distinct), expected {expected}"
        finally:
            engine.dispose()
        return problems

    def run(self) -> int:
        self.redis.start()
        migrate(self.database_url)
        self.api.start()
        wait_http(f"{self.api_url}/healthz")
        for worker in self.workers:
            worker.start(b"ready.")
        watcher = EventWatcher(self.redis.url)
        self.started = time.monotonic()
        threads = [threading.Thread(target=self.submitter), threading.Thread(target=self.faults)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        chaos_ended = self.elapsed()
        records, bodies = self.wait_for_ends()
        watcher.close()
        return self.report(records, bodies, chaos_ended, watcher)

    def report(
        self,
        records: dict[str, Any],
        bodies: dict[str, dict[str, Any]],
        chaos_ended: float,
        watcher: EventWatcher,
    ) -> int:
        lost = [job_id for job_id, record in records.items() if record is None or record.state in ACTIVE]
        stuck = [
            job_id
            for job_id, record in records.items()
            if record is not None and bodies.get(job_id, {}).get("state") != record.state
        ]
        rows = self.row_problems(records)
        duplicated = sorted(set(watcher.violations) | set(rows))
        by_state: Counter[str] = Counter()
        by_kind: dict[str, Counter[str]] = defaultdict(Counter)
        for job in self.submitted:
            record = records.get(job.job_id)
            state = record.state if record is not None else "no record"
            by_state[state] += 1
            by_kind[job.kind][state] += 1
        states = sorted(by_state)
        attempts = Counter(record.attempts for record in records.values() if record is not None)
        reasons = Counter(
            record.error_reason
            for record in records.values()
            if record is not None and record.state == "FAILED"
        )
        lines = [
            f"Soak: {self.args.jobs} jobs of each kind, seed {self.args.seed}, "
            f"{self.args.duration:.0f} s of faults, "
            f"database {'PostgreSQL' if self.database_url.startswith('postgres') else 'SQLite'}.",
            f"Machine: {machine()}.",
            f"Faults: {self.chaos.count('kill pool child')} pool children killed "
            f"({self.chaos.count('kill pool child (busy)')} while busy), "
            f"{self.chaos.count('kill worker')} whole workers killed and restarted "
            f"({self.chaos.count('kill worker (busy)')} while busy), "
            f"{self.chaos.count('restart Redis')} Redis restarts (empty); "
            f"waited {self.elapsed() - chaos_ended:.0f} s after the faults stopped; "
            f"{watcher.events} progress writes followed.",
            "",
            table(
                ["kind", "submitted", *states],
                [
                    [kind, str(sum(by_kind[kind].values())), *(str(by_kind[kind][s]) for s in states)]
                    for kind in KINDS
                ]
                + [["all", str(len(self.submitted)), *(str(by_state[s]) for s in states)]],
            ),
            "",
            table(
                ["", "count", "must be"],
                [
                    ["submitted (202)", str(len(self.submitted)), ""],
                    ["refused after 60 s of retries", str(self.refused), ""],
                    [
                        "finished",
                        str(sum(n for s, n in by_state.items() if s not in ACTIVE | {"no record"})),
                        "",
                    ],
                    ["lost", str(len(lost)), "0"],
                    ["duplicated", str(len(duplicated)), "0"],
                    ["stuck", str(len(stuck)), "0"],
                ],
            ),
            "",
            "Starts per job (attempts): "
            + ", ".join(f"{n}: {count}" for n, count in sorted(attempts.items())),
        ]
        lines += [f"FAILED ({count}): {reason}" for reason, count in reasons.most_common()]
        lines.append("Faults, in order: " + "; ".join(f"{at:.0f} s {what}" for at, what in self.chaos.log))
        for name, ids in (("lost", lost), ("duplicated", duplicated), ("stuck", stuck)):
            for job_id in ids[:10]:
                record = records.get(job_id)
                detail = watcher.violations.get(job_id) or rows.get(job_id) or ""
                lines.append(
                    f"{name}: {job_id} db={record.state if record else None} "
                    f"progress={bodies.get(job_id, {}).get('state')} {detail}"
                )
        print("\n".join(lines))
        return 1 if lost or duplicated or stuck else 0

    def close(self) -> None:
        self.stop.set()
        for worker in self.workers:
            worker.kill()
        self.api.kill()
        self.redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10, help="jobs of each kind")
    parser.add_argument("--duration", type=float, default=180, help="seconds of faults")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--redis-restarts", type=int, default=3)
    parser.add_argument("--deadline", type=float, default=240, help="seconds to wait for the jobs to end")
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL instead of SQLite")
    parser.add_argument("--keep", action="store_true", help="keep the folder (logs) even when all is well")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="jobpulse-soak-"))
    status = 2
    with ExitStack() as stack:
        database_url = (
            stack.enter_context(postgres()) if args.postgres else f"sqlite:///{folder / 'jobpulse.db'}"
        )
        soak = Soak(args, folder, database_url)
        stack.callback(soak.close)
        status = soak.run()
    if status == 0 and not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        print(f"Logs: {folder}")
    sys.exit(status)


if __name__ == "__main__":
    main()
