"""FALLBACK_TO_GPU: a CPU worker gives a job beyond its budget to the GPU queue; a GPU-queue worker runs
it (here on its CPU provider, as this machine has no CUDA, and the result says so); with no GPU worker,
the job runs on the CPU after the wait.

Each test has its own Redis (so the session worker, which listens on every queue, never sees these
messages) and its own workers on chosen queues; the database is the session's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobpulse.broker import create_celery
from jobpulse.kinds import KindRegistry
from jobpulse.ocr.kind import CPU_AFTER_GPU_WAIT_TASK
from jobpulse.settings import Settings
from tests.conftest import app_client
from tests.ocr_support import TEXT, render_page, similarity
from tests.services import RedisServer, Worker

pytestmark = pytest.mark.integration


@pytest.fixture
async def api(settings: Settings, own_redis: RedisServer) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings.model_copy(update={"redis_url": own_redis.url})) as client:
        yield client


def _env(base_env: dict[str, str], redis: RedisServer, **settings: str) -> dict[str, str]:
    env = {**base_env, "REDIS_URL": redis.url, "OMP_THREAD_LIMIT": "1"}
    env.update({f"JOBPULSE_{name.upper()}": value for name, value in settings.items()})
    return env


async def _watch(client: httpx.AsyncClient, auth: dict[str, str], job_id: str, until: set[str]) -> list[Any]:
    """Every progress body until one in ``until`` (or a terminal one)."""
    seen: list[Any] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        body = (await client.get(f"/jobs/{job_id}/progress/", headers=auth)).json()
        seen.append(body)
        if body["state"] in until or body["terminal"]:
            return seen
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {until}; last seen {seen[-1]}")


async def _submit(client: httpx.AsyncClient, auth: dict[str, str]) -> str:
    reply = await client.post(
        "/jobs/", headers=auth, data={"kind": "ai_inference"}, files={"file": ("page.png", render_page())}
    )
    assert reply.status_code == 202, reply.text
    job_id: str = reply.json()["id"]
    return job_id


async def test_over_the_cpu_budget_a_gpu_queue_worker_takes_the_job(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    base_env: dict[str, str],
    own_redis: RedisServer,
    settings: Settings,
    tmp_path: Path,
) -> None:
    # The CPU worker takes at most 0.1 megapixels (the page is 0.144): it hands off before decoding. Its
    # wait is long, so only a GPU-queue worker can run the job in this test.
    env = _env(base_env, own_redis, ocr_cpu_max_pixels="100000", ocr_gpu_wait_seconds="600")
    cpu = Worker(env, tmp_path / "cpu.log", concurrency=1, queues="ai")
    gpu = Worker(env, tmp_path / "gpu.log", concurrency=1, queues="ai-gpu")
    cpu.start()
    try:
        job_id = await _submit(api, auth)
        seen = await _watch(api, auth, job_id, {"FALLBACK_TO_GPU"})
        waiting = seen[-1]
        assert waiting["state"] == "FALLBACK_TO_GPU", cpu.log.read_text()[-2000:]
        assert (waiting["terminal"], waiting["stage"]) == (False, "waiting_for_gpu")
        assert "GPU" in waiting["message"] and waiting["poll_after_ms"] == settings.poll_idle_ms
        record = (await api.get(f"/jobs/{job_id}/", headers=auth)).json()
        assert record["state"] == "FALLBACK_TO_GPU"  # the DB records the hand-off too
        time.sleep(1.0)
        body = (await api.get(f"/jobs/{job_id}/progress/", headers=auth)).json()
        assert body["state"] == "FALLBACK_TO_GPU"  # nobody on the GPU queue yet: it waits

        gpu.start()
        seen += await _watch(api, auth, job_id, set())
        final = seen[-1]
        assert final["state"] == "SUCCESS", gpu.log.read_text()[-2000:]
        states = [body["state"] for body in seen]
        assert states.index("FALLBACK_TO_GPU") < len(states) - 1
        result = (await api.get(f"/jobs/{job_id}/", headers=auth)).json()["result"]
        assert result["attempt"] == "gpu"
        assert (result["execution_provider"], result["device"]) == ("CPUExecutionProvider", "cpu")
        assert "no CUDA" in result["note"]
        assert similarity(result["text"], TEXT) > 0.9

        # The CPU's delayed message, delivered now (a duplicate, in effect): dropped, nothing changes.
        celery = create_celery(settings.model_copy(update={"redis_url": own_redis.url}), KindRegistry.load())
        celery.send_task(CPU_AFTER_GPU_WAIT_TASK, args=[job_id], queue="ai")
        celery.close()
        deadline = time.monotonic() + 10
        while "already SUCCESS, nothing to do" not in cpu.log.read_text():
            assert time.monotonic() < deadline, cpu.log.read_text()[-2000:]
            time.sleep(0.1)
        after = (await api.get(f"/jobs/{job_id}/progress/", headers=auth)).json()
        assert (after["state"], after["version"]) == ("SUCCESS", final["version"])
    finally:
        gpu.stop()
        cpu.stop()


async def test_with_no_gpu_worker_the_job_runs_on_the_cpu_after_the_wait(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    base_env: dict[str, str],
    own_redis: RedisServer,
    tmp_path: Path,
) -> None:
    # A time budget no page meets: the CPU gives up after its first step. Only the "ai" queue has a worker.
    env = _env(base_env, own_redis, ocr_cpu_time_budget_seconds="0.001", ocr_gpu_wait_seconds="2")
    cpu = Worker(env, tmp_path / "cpu.log", concurrency=1, queues="ai")
    cpu.start()
    try:
        job_id = await _submit(api, auth)
        seen = await _watch(api, auth, job_id, {"FALLBACK_TO_GPU"})
        assert seen[-1]["state"] == "FALLBACK_TO_GPU", cpu.log.read_text()[-2000:]
        assert "budget" in seen[-1]["message"]
        waited_from = time.monotonic()
        seen += await _watch(api, auth, job_id, set())
        assert seen[-1]["state"] == "SUCCESS", cpu.log.read_text()[-2000:]
        assert time.monotonic() - waited_from > 1.0  # it waited for a GPU worker first
        record = (await api.get(f"/jobs/{job_id}/", headers=auth)).json()
        result = record["result"]
        assert result["attempt"] == "cpu_after_gpu_wait"
        assert "No GPU worker took the job within 2 s" in result["note"]
        assert similarity(result["text"], TEXT) > 0.9
    finally:
        cpu.stop()
