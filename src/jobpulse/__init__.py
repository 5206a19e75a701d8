"""jobpulse: live progress for background jobs, served from Redis without touching the database."""

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
from jobpulse.settings import Settings
from jobpulse.states import TERMINAL_STATES, JobKind, State

__version__ = "0.4.0"

__all__ = [
    "TERMINAL_STATES",
    "AuthenticationError",
    "BadInput",
    "ConfigurationError",
    "Conflict",
    "DeadlineExceeded",
    "InvalidOptions",
    "InvalidRequest",
    "JobCancelled",
    "JobError",
    "JobFailed",
    "JobKind",
    "JobpulseError",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServiceUnavailable",
    "Settings",
    "State",
    "__version__",
]
