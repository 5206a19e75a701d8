"""The worker's Celery app: the broker's app (:mod:`jobpulse.broker`) with every kind's tasks and the
reaper registered. Nothing happens at import; ``jobpulse worker`` builds it from settings."""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from jobpulse.broker import create_celery
from jobpulse.errors import ConfigurationError
from jobpulse.kinds import Kind, KindRegistry
from jobpulse.settings import Settings
from jobpulse.worker.reaper import ReaperStep
from jobpulse.worker.task import register_kind

__all__ = ["create_worker_app"]

log = logging.getLogger(__name__)


def create_worker_app(settings: Settings, kinds: KindRegistry | None = None) -> Any:
    """The Celery app a worker runs: each kind's tasks (handlers imported now, by name) and the reaper's
    bootstep. ``kinds`` defaults to the installed kinds and those of ``settings.kind_modules``.

    Each kind runs on its own queue, so a flood of one kind never starves another: a worker that listens
    on several queues takes from them in turn, and a deployment runs workers per queue.
    """
    if kinds is None:
        kinds = KindRegistry.load(settings.kind_modules)
    runnable = KindRegistry(kind for kind in kinds if _installed(kind))
    app = create_celery(settings, runnable)
    for kind in runnable:
        try:
            register_kind(app, kind)
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError(
                f"The handler of job kind {kind.name!r} ({kind.handler}) cannot be loaded: {exc}"
            ) from exc
    # Every worker also runs the reaper (jobs whose worker died, lost messages, stale progress).
    app.steps["worker"].add(ReaperStep)
    return app


def _installed(kind: Kind) -> bool:
    """Whether the modules ``kind`` needs are installed; a kind without them is left out, loudly."""
    missing = [name for name in kind.requires if importlib.util.find_spec(name) is None]
    if missing:
        log.warning(
            "job kind %r is not run by this worker: it needs %s, which is not installed",
            kind.name,
            ", ".join(missing),
        )
    return not missing
