"""OCR throughput: raw rapidocr on a fixed set of generated pages, against the same pages as jobpulse
``ai_inference`` jobs (the real API, a real Celery worker), side by side.

    .venv/bin/python bench/ocr.py [--runs 3] [--smoke]

Renders the pages once with Pillow (8 pages of 8 lines; 2 small pages in smoke mode), starts Redis, SQLite,
the API (granian) and `jobpulse worker --concurrency 1 --queues ai`, and alternates: a raw pass (rapidocr's
own ``engine(path, return_word_box=True)`` over every page, in this process), then a jobpulse pass (every
page submitted at once, then the batch progress endpoint polled until all are terminal). Both sides use
the same bundled models and the same thread settings (``OMP_THREAD_LIMIT=1``, ``THREADS`` onnxruntime
intra-op threads).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from benchkit import SECRET, Chart, Options, Section, Target, granian, main, migrate, scratch, table, worker
from PIL import Image, ImageDraw, ImageFont

from jobpulse.auth import mint_token

TARGET_OVERHEAD = 0.05
# onnxruntime intra-op threads on both sides (JOBPULSE_OCR_THREADS for the worker). One thread leaves a
# core to the API, Redis and the poller on a 2-core machine: with a thread per core, any of them waking
# stalls the model's parallel steps, which made the measured gap mostly noise.
THREADS = 1
WORDS = [
    *("invoice", "balance", "payment", "due", "date", "account", "number", "total", "amount", "tax"),
    *("paid", "order", "delivery", "address", "customer", "service", "reference", "quantity", "price"),
    *("discount", "signature", "received", "shipped", "returned", "March", "Lisbon", "Seoul", "Nairobi"),
    *("Quito", "Osaka", "receipt", "statement", "period", "credit", "debit", "transfer"),
]


def write_pages(folder: Path, count: int, size: tuple[int, int], lines: int) -> list[Path]:
    """``count`` pages of ``lines`` lines of words (a fixed sequence, so every run reads the same)."""
    font = ImageFont.load_default(size=28)
    paths: list[Path] = []
    n = 0
    for page in range(count):
        image = Image.new("L", size, 255)
        draw = ImageDraw.Draw(image)
        for line in range(lines):
            words = [WORDS[(n + k * 7) % len(WORDS)] for k in range(6)]
            n += 5
            draw.text(
                (30, 30 + line * 60), f"{page * lines + line + 1}. " + " ".join(words), fill=0, font=font
            )
        path = folder / f"page-{page + 1}.png"
        image.save(path)
        paths.append(path)
    return paths


def raw_pass(engine: Any, pages: list[Path]) -> float:
    """Seconds for rapidocr to read every page (from its file), one after another."""
    started = time.perf_counter()
    for path in pages:
        output = engine(str(path), return_word_box=True)
        assert output.txts, path
    return time.perf_counter() - started


def jobs_pass(http: httpx.Client, pages: list[bytes]) -> dict[str, float]:
    """Submit every page at once; wall seconds until the last one is seen SUCCESS, and the worker's own
    seconds in the OCR steps (the results' ``timings.total_seconds``), summed."""
    started = time.perf_counter()
    ids = []
    for n, content in enumerate(pages):
        reply = http.post(
            "/jobs/", data={"kind": "ai_inference"}, files={"file": (f"page-{n + 1}.png", content)}
        )
        assert reply.status_code == 202, reply.text
        ids.append(reply.json()["id"])
    while True:
        items = http.post("/progress/batch/", json={"ids": ids}).json()["items"]
        if all(item["terminal"] for item in items.values()):
            break
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    states = {item["state"] for item in items.values()}
    assert states == {"SUCCESS"}, states
    in_steps = 0.0
    for job_id in ids:
        result = http.get(f"/jobs/{job_id}/").json()["result"]
        in_steps += result["timings"]["total_seconds"]
    return {"seconds": seconds, "in_steps": in_steps}


def run(options: Options) -> Section:
    """Raw passes and jobpulse passes alternately, ``options.runs`` of each (medians)."""
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # before rapidocr loads OpenCV here; the worker inherits
    from rapidocr import RapidOCR

    from jobpulse.ocr.engine import bundled_models

    count, size, lines = (2, (800, 300), 3) if options.smoke else (8, (1000, 560), 8)
    folder = Path(tempfile.mkdtemp(prefix="jobpulse-bench-ocr-"))
    paths = write_pages(folder, count, size, lines)
    contents = [path.read_bytes() for path in paths]
    params: dict[str, Any] = {f"{stage}.model_path": str(path) for stage, path in bundled_models().items()}
    params["Global.log_level"] = "error"
    params["EngineConfig.onnxruntime.intra_op_num_threads"] = THREADS
    params["EngineConfig.onnxruntime.inter_op_num_threads"] = 1
    loaded = time.perf_counter()
    engine = RapidOCR(params=params)
    raw_pass(engine, paths[:1])  # warm-up: loads the three sessions
    load_seconds = time.perf_counter() - loaded
    headers = {"Authorization": f"Bearer {mint_token(SECRET, 'bench', 3600)}"}
    raw: list[float] = []
    through: list[dict[str, float]] = []
    with scratch() as bench:
        env = dict(
            bench.env, OMP_THREAD_LIMIT=os.environ["OMP_THREAD_LIMIT"], JOBPULSE_OCR_THREADS=str(THREADS)
        )
        migrate(env["DATABASE_URL"])
        with granian("jobpulse.api.app:app_from_env", env) as url:
            with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
                with worker(env, bench.folder / "worker.log", queues="ai"):
                    jobs_pass(http, contents[:1])  # warm-up: the worker's child loads its engine
                    for _ in range(options.runs):
                        raw.append(raw_pass(engine, paths))
                        through.append(jobs_pass(http, contents))
    for path in paths:
        path.unlink()
    folder.rmdir()

    raw_s = statistics.median(raw)
    jobs_s = statistics.median(r["seconds"] for r in through)
    steps_s = statistics.median(r["in_steps"] for r in through)
    raw_ips, jobs_ips = count / raw_s, count / jobs_s
    overhead = raw_ips / jobs_ips - 1
    results = table(
        ["what", f"seconds for {count} pages", "images/s", "vs raw"],
        [
            ["rapidocr alone: `engine(path, return_word_box=True)`", f"{raw_s:.2f}", f"{raw_ips:.3f}",
             "1.00x"],
            ["jobpulse jobs, end to end (submit all -> all SUCCESS seen)", f"{jobs_s:.2f}", f"{jobs_ips:.3f}",
             f"{jobs_ips / raw_ips:.3f}x"],
            ["  of which the worker's OCR steps (decode, detect, recognize)", f"{steps_s:.2f}", "", ""],
            ["  the rest: upload, queue, DB and Redis writes, polling", f"{jobs_s - steps_s:.2f}", "", ""],
        ],
    )  # fmt: skip
    how = (
        f"**How.** {count} pages of {lines} lines, {size[0]}x{size[1]} PNG, rendered once with Pillow's "
        "default font. Raw: rapidocr 3 with its bundled PP-OCRv6 small models (the same files jobpulse "
        f"names), loaded once ({load_seconds:.1f} s with a warm-up page, not counted), reading each page "
        "from its file in turn. jobpulse: each page `POST /jobs/` (`kind=ai_inference`) to the API under "
        "granian, run by `jobpulse worker --concurrency 1 --queues ai` (its engine loaded by a warm-up "
        "job), all submitted at once; the clock stops when a `POST /progress/batch/` poll (every 100 ms) "
        f"sees every job SUCCESS. Raw passes and job passes alternate; medians of {options.runs}. Both "
        f"run with `OMP_THREAD_LIMIT=1` and {THREADS} onnxruntime intra-op thread(s) "
        "(`JOBPULSE_OCR_THREADS`)."
    )
    targets = [
        Target(
            "OCR through jobpulse within 5% of raw rapidocr's images/s",
            overhead < TARGET_OVERHEAD,
            f"{overhead:+.1%} ({jobs_ips:.3f} vs {raw_ips:.3f} images/s)",
        )
    ]
    chart = Chart(
        f"OCR, {count} pages", "images/s", {"raw rapidocr": raw_ips, "jobpulse jobs (end to end)": jobs_ips}
    )
    return Section("OCR: images per second", "\n\n".join([results, how]), targets, [chart])


if __name__ == "__main__":
    main(run, __doc__)
