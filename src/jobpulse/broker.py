"""The Celery app both sides share, and how a job's task is sent: by name, to its kind's queue.

The API only sends; workers (:mod:`jobpulse.worker.app`) add the tasks to the same app. Neither side owns
this module, so the API never imports worker code. Nothing happens at import: the app is built from
settings by :func:`create_celery`.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

from celery import Celery

from jobpulse.kinds import KindRegistry
from jobpulse.settings import Settings

__all__ = ["broker_url", "create_celery", "send_job"]


def broker_url(redis_url: str) -> str:
    """REDIS_URL in kombu's spelling: kombu names unix sockets ``redis+socket://``."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url.removeprefix("unix://")
    return redis_url


def create_celery(settings: Settings, kinds: KindRegistry) -> Any:
    """A Celery app on the Redis broker that routes each kind's tasks to its queue; no task registered.

    Late acks with ``reject_on_worker_lost`` redeliver a job whose worker died; the visibility timeout
    exceeds the longest job, so a job that is merely slow is never delivered twice.
    """
    url = settings.require_redis_url()
    app = Celery("jobpulse", broker=broker_url(url), set_as_current=False)
    if url.startswith("rediss://") and "ssl_cert_reqs" not in url:
        app.conf.broker_use_ssl = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    routes = kinds.routes()
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue="jobs",  # tasks without a route: none of the kinds'
        task_routes={name: {"queue": queue} for name, queue in routes.items()},
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
    app.conf.jobpulse_kinds = kinds
    app.conf.jobpulse_pid = os.getpid()
    return app


def send_job(
    app: Any,
    name: str,
    queue: str,
    job_id: str,
    countdown: float = 0.0,
    *,
    retries: int = 2,
    interval: float = 0.5,
) -> None:
    """Send task ``name`` for ``job_id`` to ``queue``, with a short publish retry (kombu raises its own
    and the transport's errors when the broker still refuses)."""
    app.send_task(
        name,
        args=[job_id],
        queue=queue,
        countdown=countdown or None,
        retry=True,
        retry_policy={
            "max_retries": retries,
            "interval_start": 0,
            "interval_step": interval,
            "interval_max": 2 * interval,
        },
    )
