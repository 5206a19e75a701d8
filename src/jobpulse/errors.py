"""The exceptions jobpulse raises, under one root.

Each carries a stable snake_case ``code``, a ``message`` written for the end user, and the
``http_status`` it is answered with: the API (:mod:`jobpulse.api.errors`) and the client
(:mod:`jobpulse.client.polling`) both read it here, so the mapping exists once::

    JobpulseError
    ├── ConfigurationError        settings that cannot work (no secret key, a bad URL)
    ├── ServiceUnavailable        Redis or the broker cannot be reached (HTTP 503)
    ├── AuthenticationError       missing, expired or forged token (HTTP 401)
    ├── NotFound                  no such job, or not the caller's (HTTP 404)
    ├── Conflict                  the job's state forbids the action, e.g. cancel a finished job (HTTP 409)
    ├── RateLimited               an owner submits faster than the configured rate (HTTP 429)
    ├── InvalidRequest            a malformed request (HTTP 400)
    │   ├── PayloadTooLarge       a body (an upload, a JSON body) over its route's limit (HTTP 413)
    │   └── InvalidOptions        options or fields that fail validation (HTTP 422)
    ├── DeadlineExceeded          a client's wait passed its deadline (also a TimeoutError)
    └── JobError                  raised inside a worker; ends the job
        ├── BadInput              the input is unacceptable: REJECTED_BAD_INPUT with ``message`` as reason
        ├── JobFailed             the job cannot finish (a stuck tool): FAILED with ``message`` as reason
        ├── JobCancelled          the owner cancelled the job; the worker stops at its next report
        └── HandOff               (jobpulse.handler) the job moves to another queue (the OCR GPU queue)
"""

from __future__ import annotations

__all__ = [
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
    "JobpulseError",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServiceUnavailable",
]


class JobpulseError(Exception):
    """The root of every jobpulse exception."""

    code = "jobpulse_error"
    http_status = 500

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ConfigurationError(JobpulseError):
    """Settings that cannot work."""

    code = "configuration_error"


class ServiceUnavailable(JobpulseError):
    """Redis or the broker cannot be reached; the client should retry after ``retry_after`` seconds."""

    code = "service_unavailable"
    http_status = 503

    def __init__(self, message: str, *, code: str | None = None, retry_after: int = 2) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class AuthenticationError(JobpulseError):
    """A missing, expired or forged bearer token."""

    code = "not_authenticated"
    http_status = 401


class NotFound(JobpulseError):
    """No such resource, or one the caller does not own (the two are indistinguishable)."""

    code = "not_found"
    http_status = 404


class Conflict(JobpulseError):
    """The resource's state forbids the action."""

    code = "conflict"
    http_status = 409


class RateLimited(JobpulseError):
    """The owner submitted more than the configured rate; the client may try again in ``retry_after``
    seconds."""

    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, code: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class InvalidRequest(JobpulseError):
    """A malformed request."""

    code = "invalid_request"
    http_status = 400


class PayloadTooLarge(InvalidRequest):
    """A request body (an upload, a JSON body) over its route's limit."""

    code = "payload_too_large"
    http_status = 413


class InvalidOptions(InvalidRequest):
    """Options or fields that fail validation."""

    code = "invalid_options"
    http_status = 422


class DeadlineExceeded(JobpulseError, TimeoutError):
    """A client's wait for a job passed its deadline; the job itself goes on."""

    code = "deadline_exceeded"


class JobError(JobpulseError):
    """Raised inside a worker to end the job."""

    code = "job_error"


class BadInput(JobError):
    """The input is unacceptable; ``message`` is shown to the end user as ``error_reason``."""

    code = "bad_input"


class JobFailed(JobError):
    """The job cannot finish, for a reason the user may read (``message``; never a path or a traceback)."""

    code = "job_failed"


class JobCancelled(JobError):
    """The job was cancelled by its owner while it ran."""

    code = "cancelled"

    def __init__(self, message: str = "The job was cancelled.", *, code: str | None = None) -> None:
        super().__init__(message, code=code)
