"""jobpulse: live progress for background jobs, served from Redis without touching the database.

The names here are the public API: the states, the settings, the exceptions, how a job kind is declared
(:class:`Kind`), what its handler gets (:class:`JobRun`), and :class:`Tracker` for the tasks of a host
application. All but the states and the exceptions are imported on first use.
"""

import importlib
import typing

from jobpulse.errors import (
    AuthenticationError,
    BadInput,
    ConfigurationError,
    Conflict,
    DeadlineExceeded,
    InvalidOptions,
    InvalidRequest,
    JobCancelled,
    JobError,
    JobFailed,
    JobpulseError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
)
from jobpulse.states import TERMINAL_STATES, State

if typing.TYPE_CHECKING:
    from jobpulse.handler import Handler, HandOff, JobRun, Outcome, Requeue
    from jobpulse.kinds import JsonInput, Kind, KindRegistry, Task, Upload
    from jobpulse.settings import Settings
    from jobpulse.tracker import Tracker

__version__ = "0.6.0"

__all__ = [
    "TERMINAL_STATES",
    "AuthenticationError",
    "BadInput",
    "ConfigurationError",
    "Conflict",
    "DeadlineExceeded",
    "HandOff",
    "Handler",
    "InvalidOptions",
    "InvalidRequest",
    "JobCancelled",
    "JobError",
    "JobFailed",
    "JobRun",
    "JobpulseError",
    "JsonInput",
    "Kind",
    "KindRegistry",
    "NotFound",
    "Outcome",
    "PayloadTooLarge",
    "RateLimited",
    "Requeue",
    "ServiceUnavailable",
    "Settings",
    "State",
    "Task",
    "Tracker",
    "Upload",
    "__version__",
]


# Imported on first use (PEP 562): a client of the SDK (``jobpulse.client``) loads none of the server's
# modules (Redis, settings, the worker's lifecycle) by importing ``jobpulse``.
_LAZY = {
    "HandOff": "jobpulse.handler",
    "Handler": "jobpulse.handler",
    "JobRun": "jobpulse.handler",
    "Outcome": "jobpulse.handler",
    "Requeue": "jobpulse.handler",
    "JsonInput": "jobpulse.kinds",
    "Kind": "jobpulse.kinds",
    "KindRegistry": "jobpulse.kinds",
    "Task": "jobpulse.kinds",
    "Upload": "jobpulse.kinds",
    "Settings": "jobpulse.settings",
    "Tracker": "jobpulse.tracker",
}


def __getattr__(name: str) -> typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jobpulse' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
