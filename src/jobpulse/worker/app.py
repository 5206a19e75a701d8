"""The Celery app factory. Workers and the API build it from settings; nothing happens at import."""

from __future__ import annotations

import os
import ssl
from typing import Any

from celery import Celery

from jobpulse.settings import Settings
from jobpulse.states import JobKind

__all__ = ["CPU_AFTER_GPU_WAIT_TASK", "GPU_QUEUE", "GPU_TASK", "QUEUES", "TASKS", "create_celery"]

# Each job kind runs on its own queue, so a flood of one kind never starves another: a worker that
# listens on several queues takes from them in turn, and a deployment runs workers per queue.
TASKS: dict[JobKind, tuple[str, str]] = {
    JobKind.SPREADSHEET_IMPORT: ("jobpulse.spreadsheet_import", "imports"),
    JobKind.AI_INFERENCE: ("jobpulse.ai_inference", "ai"),
    JobKind.VIDEO: ("jobpulse.video", "media"),
}
# AI jobs the CPU gave up on wait here for a worker started with `--queues ai-gpu`.
GPU_QUEUE = "ai-gpu"
# The OCR job's other two tasks (worker/ai_inference.py): its attempt on a GPU worker, and its attempt on
# the CPU once no GPU worker took it in time. Named here, so the reaper can send them without the job.
GPU_TASK = f"{TASKS[JobKind.AI_INFERENCE][0]}.gpu"
CPU_AFTER_GPU_WAIT_TASK = f"{TASKS[JobKind.AI_INFERENCE][0]}.cpu_after_gpu_wait"
# What `jobpulse worker` (and so `jobpulse up`) listens on without --queues: everything.
QUEUES = tuple(sorted({queue for _, queue in TASKS.values()} | {GPU_QUEUE}))


def broker_url(redis_url: str) -> str:
    """REDIS_URL in kombu's spelling: kombu names unix sockets ``redis+socket://``."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url.removeprefix("unix://")
    return redis_url


def create_celery(settings: Settings, *, register_tasks: bool = True) -> Any:
    """A Celery app on the Redis broker, with jobpulse's tasks and the reaper's worker bootstep
    registered (the API only sends: it skips them).

    Late acks with ``reject_on_worker_lost`` redeliver a job whose worker died; the visibility timeout
    exceeds the longest job, so a job that is merely slow is never delivered twice.
    """
    url = settings.require_redis_url()
    app = Celery("jobpulse", broker=broker_url(url), set_as_current=False)
    if url.startswith("rediss://") and "ssl_cert_reqs" not in url:
        app.conf.broker_use_ssl = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=TASKS[JobKind.SPREADSHEET_IMPORT][1],
        task_routes={name: {"queue": queue} for name, queue in TASKS.values()},
        task_time_limit=settings.job_time_limit_seconds + 30,
        task_soft_time_limit=settings.job_time_limit_seconds,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=settings.publish_timeout_seconds,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_seconds,
            # Check for messages of dead workers often, not every ~100 s (kombu's default).
            "unacked_restore_interval": 5,
            "socket_timeout": settings.redis_timeout_seconds,
            "socket_connect_timeout": settings.redis_timeout_seconds,
        },
        broker_pool_limit=10,
    )
    if settings.worker_concurrency:
        app.conf.worker_concurrency = settings.worker_concurrency
    app.conf.jobpulse_settings = settings
    app.conf.jobpulse_pid = os.getpid()

    if register_tasks:
        from jobpulse.worker import ai_inference, spreadsheet, video
        from jobpulse.worker.reaper import ReaperStep

        spreadsheet.register(app)
        ai_inference.register(app)
        video.register(app)
        # Every worker also runs the reaper (jobs whose worker died, lost messages, stale progress).
        app.steps["worker"].add(ReaperStep)
    return app


def worker_app() -> Any:
    """The app `celery -A jobpulse.worker.app:worker_app worker` loads: settings from the environment."""
    return create_celery(Settings())
