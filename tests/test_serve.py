"""``jobpulse serve``'s defaults: uvloop and hiredis in every process, and /metrics correct across
``--workers`` processes (prometheus-client's multiprocess mode, in a folder removed at exit)."""

from __future__ import annotations

import re
import resource
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from jobpulse.auth import mint_token
from jobpulse.embedded import free_port
from jobpulse.serving import MULTIPROC_ENV, metrics_dir, raise_fd_limit
from tests.conftest import SECRET
from tests.services import stop_group

pytestmark = pytest.mark.integration

POLLS = 60
PROGRESS = "/jobs/{job_id}/progress/"


def _start(env: dict[str, str], log: Path, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "jobpulse", "serve", "--port", str(port), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            return process, url
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop_group(process)
                raise RuntimeError("serve did not start:\n" + log.read_text()[-3000:]) from None
            time.sleep(0.1)


def _stack_lines(log: Path, count: int) -> list[str]:
    deadline = time.monotonic() + 30
    while True:
        lines = [line for line in log.read_text().splitlines() if line.startswith("jobpulse api pid ")]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def _progress_polls_by_file(folder: Path) -> dict[str, float]:
    """Each process's own count of answered progress polls, from its file in the metrics folder."""
    counts: dict[str, float] = {}
    for path in folder.glob("counter_*.db"):
        values = MmapedDict.read_all_values_from_file(str(path))  # type: ignore[no-untyped-call]
        for key, value, _timestamp, _pos in values:
            if "jobpulse_http_requests_total" in key and PROGRESS in key and '"200"' in key:
                counts[path.name] = counts.get(path.name, 0) + value
    return counts


def _metric(text: str, name: str, route: str) -> float:
    pattern = re.compile(rf'^{name}\{{.*route="{re.escape(route)}".*\}} (\S+)$', re.MULTILINE)
    return sum(float(value) for value in pattern.findall(text))


def test_two_workers_share_their_metrics(base_env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    process, url = _start(base_env, log, "--workers", "2")
    try:
        lines = _stack_lines(log, 2)
        assert len(lines) == 2, log.read_text()
        for line in lines:
            assert "event loop uvloop.Loop, Redis parser AsyncHiredisParser" in line
            assert "metrics multiprocess" in line
        shared = re.search(r"share their metrics through (\S+)", log.read_text())
        assert shared is not None
        folder = Path(shared.group(1))
        token = mint_token(SECRET, "u", 60)
        auth = {"Authorization": f"Bearer {token}"}
        job = uuid.uuid4()

        def poll(_: int) -> int:
            # A new connection each time, several at once: the kernel spreads them over both processes.
            return httpx.get(f"{url}/jobs/{job}/progress/", headers=auth, timeout=10).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(poll, range(POLLS))) == {200}
        assert httpx.get(f"{url}/jobs/", headers=auth, timeout=10).status_code == 200

        by_process = _progress_polls_by_file(folder)
        assert len(by_process) == 2, by_process  # both processes answered polls
        assert sum(by_process.values()) == POLLS
        # Any process's /metrics shows the sum of both: scrape a few times, over new connections.
        for _ in range(4):
            text = httpx.get(f"{url}/metrics", timeout=10).text
            assert _metric(text, "jobpulse_http_requests_total", PROGRESS) == POLLS
            assert _metric(text, "jobpulse_sql_statements_total", PROGRESS) == 0
            assert _metric(text, "jobpulse_sql_statements_total", "/jobs/") >= 1
    finally:
        stop_group(process)
    assert process.returncode == 0, log.read_text()[-3000:]
    assert not folder.exists()  # the private folder is removed at exit


def test_one_worker_keeps_its_metrics_in_process(base_env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    process, _url = _start(base_env, log)
    try:
        (line,) = _stack_lines(log, 1)
        assert "event loop uvloop.Loop" in line and "metrics this process" in line
        assert "file descriptor limit" in log.read_text()
    finally:
        stop_group(process)


def test_the_metrics_folder_is_private_and_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with metrics_dir(1) as none:
        assert none is None
    with metrics_dir(2) as made:
        assert made is not None
        folder = Path(made)
        assert folder.is_dir() and folder.stat().st_mode & 0o077 == 0
    assert not folder.exists()
    monkeypatch.setenv(MULTIPROC_ENV, str(folder.parent))
    with metrics_dir(2) as given:
        assert given == str(folder.parent)


def test_the_fd_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        limit = raise_fd_limit()
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == limit
        assert limit == hard or hard == resource.RLIM_INFINITY
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
