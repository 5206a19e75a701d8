"""Video processing overhead: plain ffmpeg against the jobpulse worker path, on the same input with the same
settings, side by side.

    .venv/bin/python bench/video.py [--runs 3] [--smoke]

Makes a 720p test clip with sound once (30 s; 2 s in smoke mode), then alternates: the worker's own
ffmpeg command lines (each rendition, then the thumbnail) run plainly, one after another, without
`-progress`; and the same video uploaded to the API (granian) and processed by `jobpulse worker
--queues media`, which probes it, runs the same commands while it reads their progress and reports
it, and records the result. The target: progress reporting and orchestration add under 3%.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from benchkit import (
    SECRET,
    Chart,
    Options,
    Section,
    Target,
    granian,
    main,
    migrate,
    scratch,
    table,
    worker,
    worker_seconds,
)

from jobpulse.auth import mint_token
from jobpulse.media.ffmpeg import thumbnail_command, transcode_command
from jobpulse.media.renditions import plan_renditions
from jobpulse.settings import Settings

TARGET_OVERHEAD = 0.03
_PROGRESS_FLAGS = {"-progress": 2, "-stats_period": 2, "-nostats": 1}  # flag -> words it takes


def make_clip(path: Path, seconds: int) -> None:
    """A moving 1280x720 pattern at 25 fps with a tone (``testsrc2``: every frame differs, like film)."""
    subprocess.run(
        [
            *("ffmpeg", "-hide_banner", "-loglevel", "error", "-y"),
            *("-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=25:duration={seconds}"),
            *("-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"),
            *("-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"),
            *("-c:a", "aac", "-shortest", str(path)),
        ],
        check=True,
    )


def without_progress(argv: list[str]) -> list[str]:
    """A worker command line as anyone would run it by hand: no ``-progress`` reporting."""
    plain: list[str] = []
    skip = 0
    for word in argv:
        if skip:
            skip -= 1
            continue
        if word in _PROGRESS_FLAGS:
            skip = _PROGRESS_FLAGS[word] - 1
            continue
        plain.append(word)
    return plain


def plain_commands(source: Path, out: Path, seconds: int) -> list[list[str]]:
    """What the worker runs for ``source`` with default settings, without progress reporting."""
    settings = Settings()
    renditions = plan_renditions(list(settings.video_renditions), 1280, 720)
    commands = [
        transcode_command("ffmpeg", source, out / r.file_name, r, settings.video_preset) for r in renditions
    ]
    commands.append(thumbnail_command("ffmpeg", source, out / "thumbnail.jpg", min(seconds * 0.1, 10.0), 640))
    return [without_progress(command) for command in commands]


def run_plain(commands: list[list[str]]) -> float:
    started = time.perf_counter()
    for command in commands:
        subprocess.run(command, check=True)
    return time.perf_counter() - started


def run_jobpulse(http: httpx.Client, content: bytes) -> dict[str, float]:
    """Upload, poll progress as the server's ``poll_after_ms`` asks (as the clients do) until READY; wall
    time, the worker's own time, and the progress versions seen."""
    started = time.perf_counter()
    response = http.post("/media/videos/", files={"file": ("clip.mp4", content, "video/mp4")})
    assert response.status_code == 202, response.text
    video_id = response.json()["id"]
    versions = set()
    while True:
        body = http.get(f"/media/videos/{video_id}/progress/").json()
        versions.add(body["version"])
        if body["terminal"]:
            break
        time.sleep(body["poll_after_ms"] / 1000)
    seconds = time.perf_counter() - started
    assert body["state"] == "READY", body
    record = http.get(f"/media/videos/{video_id}/").json()
    in_worker = worker_seconds(record)
    return {"seconds": seconds, "in_worker": in_worker, "updates": len(versions)}


def run(options: Options) -> Section:
    """Plain ffmpeg and the worker path alternately, ``options.runs`` of each (medians)."""
    seconds = 2 if options.smoke else 30
    folder = Path(tempfile.mkdtemp(prefix="jobpulse-bench-video-"))
    source = folder / "clip.mp4"
    make_clip(source, seconds)
    content = source.read_bytes()
    commands = plain_commands(source, folder, seconds)
    headers = {"Authorization": f"Bearer {mint_token(SECRET, 'bench', 3600)}"}
    plain: list[float] = []
    worked: list[dict[str, float]] = []
    with scratch() as bench:
        migrate(bench.env["DATABASE_URL"])
        with (
            granian("jobpulse.api.app:app_from_env", bench.env) as url,
            httpx.Client(base_url=url, headers=headers, timeout=120) as http,
            worker(bench.env, bench.folder / "worker.log", queues="media"),
        ):
            run_jobpulse(http, content)  # warm-up: lazy imports, connections, the page cache
            for _ in range(options.runs):
                plain.append(run_plain(commands))
                worked.append(run_jobpulse(http, content))
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()

    plain_s = statistics.median(plain)
    worker_s = statistics.median(r["in_worker"] for r in worked)
    e2e_s = statistics.median(r["seconds"] for r in worked)
    updates = statistics.median(r["updates"] for r in worked)
    # Each worker run against the plain run just before it: pairs cancel the machine's slow drifts.
    paired = sorted(r["in_worker"] / p - 1 for p, r in zip(plain, worked, strict=True))
    overhead = statistics.median(paired)
    speed = seconds / plain_s
    results = table(
        ["what", "seconds", "x real time", "vs plain ffmpeg"],
        [
            ["plain ffmpeg: 360p + 720p + thumbnail, one after another", f"{plain_s:.2f}", f"{speed:.1f}x",
             "1.00x"],
            ["jobpulse worker (started_at -> finished_at: probe, transcodes with progress, thumbnail, DB)",
             f"{worker_s:.2f}", f"{seconds / worker_s:.1f}x", f"{worker_s / plain_s:.3f}x"],
            ["jobpulse end to end (upload -> READY seen by a client polling as told)", f"{e2e_s:.2f}",
             f"{seconds / e2e_s:.1f}x", f"{e2e_s / plain_s:.3f}x"],
        ],
    )  # fmt: skip
    spread = (
        f"Paired overheads, run by run: {', '.join(f'{x:+.1%}' for x in paired)}; plain ffmpeg itself "
        f"ranged {min(plain):.2f}-{max(plain):.2f} s over the runs."
    )
    how = (
        f"**How.** A {seconds} s 1280x720 25 fps clip with AAC sound ({len(content) / 1024 / 1024:.1f} MiB, "
        "`testsrc2`, x264 crf 18). Plain: the worker's own command lines (from `media/ffmpeg.py`, default "
        "settings: 360p and 720p at `-preset veryfast`, then the thumbnail) run one after another with "
        "`subprocess.run`, minus the `-progress` flags. jobpulse: `POST /media/videos/` to the API under "
        "granian; `jobpulse worker --concurrency 1 --queues media` on SQLite probes the file with ffprobe, "
        "runs the same commands reading their progress, and writes the records; its time is the record's "
        "`finished_at - started_at`. A client polls the progress endpoint meanwhile, as often as its "
        f"`poll_after_ms` asks (it saw about {updates:.0f} progress versions a run), so the end to end time "
        f"includes up to one poll interval. After a warm-up upload the two alternate; medians of "
        f"{options.runs}."
    )
    targets = [
        Target(
            "video: progress reporting and orchestration add < 3% to plain ffmpeg",
            overhead < TARGET_OVERHEAD,
            f"{overhead:+.1%}, median of {len(paired)} paired runs ({worker_s:.2f} vs {plain_s:.2f} s; "
            f"transcoding at {speed:.1f}x real time)",
        )
    ]
    chart = Chart(
        f"Video processing, {seconds} s of 720p",
        "seconds",
        {"plain ffmpeg": plain_s, "jobpulse worker": worker_s, "jobpulse end to end": e2e_s},
    )
    return Section(
        "Video processing: overhead over plain ffmpeg", "\n\n".join([results, spread, how]), targets, [chart]
    )


if __name__ == "__main__":
    main(run, __doc__)
