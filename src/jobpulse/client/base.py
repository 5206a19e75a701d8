"""What ``Client`` and ``AsyncClient`` share: URLs, headers, uploads, and reading answers.

Both are thin I/O shells over this base and :class:`~jobpulse.client.polling.Poller`, so the sync and
async clients send the same requests and interpret the same answers (httpx's own layout).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import quote

import httpx

from jobpulse.client.kinds import KindInfo
from jobpulse.client.polling import Deadline, Poller, Polling, Step, error_from_answer
from jobpulse.client.status import Progress
from jobpulse.errors import InvalidRequest, ServiceUnavailable

__all__ = ["BaseClient", "FileInput", "Resource", "resource_of"]

Resource = Literal["jobs", "videos"]
FileInput = str | os.PathLike[str] | bytes | IO[bytes]

_ROUTES: dict[str, str] = {"jobs": "/jobs", "videos": "/media/videos"}
DEFAULT_URL = "http://127.0.0.1:8000"


def resource_of(kind: str | None) -> Resource:
    """Where jobs of ``kind`` live: ``"videos"`` for videos, ``"jobs"`` for everything else."""
    return "videos" if kind == "video" else "jobs"


def _route(resource: Resource, job_id: str | None = None, tail: str = "") -> str:
    if resource not in _ROUTES:
        raise ValueError(f"resource must be 'jobs' or 'videos', not {resource!r}")
    if job_id is None:
        return f"{_ROUTES[resource]}/"
    return f"{_ROUTES[resource]}/{quote(job_id, safe='')}/{tail}"


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


class BaseClient:
    """Settings and request building shared by both clients."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        polling: Polling | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.polling = polling or Polling()
        self.headers = dict(headers or {})
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"

    # -- building requests -------------------------------------------------------------------------

    @staticmethod
    @contextmanager
    def _submission(
        file: FileInput, kind: str, options: Mapping[str, Any] | str | None, filename: str | None
    ) -> Iterator[tuple[str, dict[str, str], dict[str, Any]]]:
        """URL, form fields and file of a submission; a file opened from a path is closed afterwards.

        The form names ``kind`` before the file, so the server can refuse a bad kind before the upload.
        """
        data = {} if kind == "video" else {"kind": kind}
        if options is not None:
            data["options"] = options if isinstance(options, str) else json.dumps(options)
        if isinstance(file, bytes):
            yield _route(resource_of(kind)), data, {"file": (filename or "upload", file)}
        elif isinstance(file, str | os.PathLike):
            path = Path(file)
            with path.open("rb") as content:
                yield _route(resource_of(kind)), data, {"file": (filename or path.name, content)}
        else:
            name = filename or Path(str(getattr(file, "name", "upload"))).name
            yield _route(resource_of(kind)), data, {"file": (name, file)}

    @staticmethod
    def _json_submission(
        kind: str, input: Mapping[str, Any] | None, options: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """The body of a JSON submission (``POST /jobs/``); an input or options left out are omitted."""
        body: dict[str, Any] = {"kind": kind}
        if input is not None:
            body["input"] = dict(input)
        if options is not None:
            body["options"] = dict(options)
        return body

    @staticmethod
    def _review_body(decision: str, text: str | None) -> dict[str, Any]:
        """The body of ``POST /jobs/{id}/review/``; a decision other than approve or reject is refused
        here, before a request is sent."""
        if decision not in ("approve", "reject"):
            raise ValueError(f"decision must be 'approve' or 'reject', not {decision!r}")
        return {"decision": decision} if text is None else {"decision": decision, "text": text}

    def _timeout(self, deadline: Deadline) -> float:
        left = deadline.remaining()
        if left is None:
            return self.timeout
        if left <= 0:
            raise deadline.expired()
        return min(self.timeout, left)

    # -- reading answers ---------------------------------------------------------------------------

    @staticmethod
    def _answer(response: httpx.Response) -> Any:
        """The JSON body of a successful answer; the matching jobpulse exception for an error."""
        body = _json(response)
        if response.is_success and body is not None:
            return body
        if response.is_success:
            raise ServiceUnavailable(f"The server answered HTTP {response.status_code} without JSON.")
        raise error_from_answer(response.status_code, body, response.headers.get("retry-after"))

    @staticmethod
    def _no_content(response: httpx.Response) -> None:
        """Nothing for a successful answer without a body (a 204); the matching exception for an error."""
        if not response.is_success:
            retry_after = response.headers.get("retry-after")
            raise error_from_answer(response.status_code, _json(response), retry_after)

    @staticmethod
    def _unreachable(exc: httpx.TransportError, url: str) -> ServiceUnavailable:
        return ServiceUnavailable(f"Could not reach the jobpulse API at {url}: {exc.__class__.__name__}.")

    @staticmethod
    def _progress_step(poller: Poller, response: httpx.Response | None) -> Step:
        if response is None:
            return poller.transport_error()
        return poller.progress_answer(response.status_code, response.headers, _json(response))

    @staticmethod
    def _record_step(poller: Poller, response: httpx.Response | None) -> Step:
        if response is None:
            return poller.record_answer(None, None)
        return poller.record_answer(response.status_code, _json(response))

    @staticmethod
    def _kinds(body: Any) -> list[KindInfo]:
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise InvalidRequest("The kinds answer has no items.")
        return [KindInfo.from_body(item) for item in items if isinstance(item, dict) and "name" in item]

    @staticmethod
    def _many(body: Any) -> dict[str, Progress]:
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, dict):
            raise InvalidRequest("The batch answer has no items.")
        return {job_id: Progress.from_body(item) for job_id, item in items.items()}
