"""``Client`` and ``AsyncClient``: the jobpulse API from Python, sync or async, with the same behaviour.

with Client("http://127.0.0.1:8000", token=token) as client:
    job = client.submit_spreadsheet("people.csv")
    for progress in client.watch(job.id):
        print(progress.state, progress.percent)
    export = client.submit_json("rows_export", {"job_id": job.id, "format": "csv"})  # a JSON kind
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from types import TracebackType
from typing import Any, Self

import httpx

from jobpulse.client.base import BaseClient, FileInput, Resource, _route
from jobpulse.client.kinds import KindInfo
from jobpulse.client.polling import Deadline, Poller, Polling
from jobpulse.client.status import Progress

__all__ = ["AsyncClient", "Client"]

Options = Mapping[str, Any] | str | None
Document = Mapping[str, Any] | None


class Client(BaseClient):
    """The blocking client. Close it (or use ``with``) to release its connections."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        polling: Polling | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, token=token, headers=headers, timeout=timeout, polling=polling)
        self._http = httpx.Client(
            base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc, self.base_url) from exc

    def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        return self._answer(self._send(method, url, **kwargs))

    def _get(
        self, url: str, deadline: Deadline, headers: Mapping[str, str] | None = None
    ) -> httpx.Response | None:
        try:
            return self._http.get(url, headers=headers, timeout=self._timeout(deadline))
        except httpx.TransportError:
            return None

    def submit(
        self,
        file: FileInput,
        *,
        kind: str = "spreadsheet_import",
        options: Options = None,
        filename: str | None = None,
    ) -> Progress:
        """Upload ``file`` (a path, bytes or a binary file) as a job of ``kind``; its PENDING record."""
        with self._submission(file, kind, options, filename) as (url, data, files):
            return Progress.from_body(self._call("POST", url, data=data, files=files))

    def submit_json(self, kind: str, input: Document = None, options: Document = None) -> Progress:
        """Submit a job of a kind whose input is a JSON document (or that takes none); its PENDING
        record. A bad ``input`` or ``options`` raises ``InvalidOptions`` with the server's reason."""
        body = self._json_submission(kind, input, options)
        return Progress.from_body(self._call("POST", _route("jobs"), json=body))

    def kinds(self) -> list[KindInfo]:
        """The job kinds this deployment accepts (``GET /kinds/``), sorted by name."""
        return self._kinds(self._call("GET", "/kinds/"))

    def submit_spreadsheet(
        self, file: FileInput, options: Options = None, *, filename: str | None = None
    ) -> Progress:
        """Submit a spreadsheet import (.xlsx, .xlsm, .xls, .ods, .csv)."""
        return self.submit(file, kind="spreadsheet_import", options=options, filename=filename)

    def submit_video(
        self, file: FileInput, options: Options = None, *, filename: str | None = None
    ) -> Progress:
        """Submit a video to transcode (``POST /media/videos/``)."""
        return self.submit(file, kind="video", options=options, filename=filename)

    def submit_ocr(
        self, file: FileInput, options: Options = None, *, filename: str | None = None
    ) -> Progress:
        """Submit an image for OCR (an ``ai_inference`` job)."""
        return self.submit(file, kind="ai_inference", options=options, filename=filename)

    def record(self, job_id: str, resource: Resource = "jobs") -> dict[str, Any]:
        """The DB-backed record (``GET /jobs/{id}/``): result, input, timestamps."""
        body: dict[str, Any] = self._call("GET", _route(resource, job_id))
        return body

    def records(
        self, resource: Resource = "jobs", *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the caller's records, newest first, and the cursor of the next page."""
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        body = self._call("GET", _route(resource), params=params)
        return body["items"], body["next_cursor"]

    def progress(self, job_id: str, resource: Resource = "jobs") -> Progress:
        """The live progress record, from Redis; ``state`` UNKNOWN when there is none."""
        return Progress.from_body(self._call("GET", _route(resource, job_id, "progress/")))

    def progress_many(self, job_ids: list[str]) -> dict[str, Progress]:
        """Progress of up to 500 jobs of any kind in one request, keyed by id as given."""
        return self._many(self._call("POST", "/progress/batch/", json={"ids": job_ids}))

    def cancel(self, job_id: str, resource: Resource = "jobs") -> Progress:
        """Ask for the job to stop; ``Conflict`` if it already ended."""
        return Progress.from_body(self._call("POST", _route(resource, job_id, "cancel/")))

    def delete(self, job_id: str, resource: Resource = "jobs") -> None:
        """Delete the job for good (record, rows, files, progress; a running job is cancelled first).
        ``NotFound`` if there is no such job of the caller's (deleted already, or never)."""
        self._no_content(self._send("DELETE", _route(resource, job_id)))

    def retry(self, job_id: str, resource: Resource = "jobs") -> Progress:
        """Run a FAILED job again as a new job with the same input and options; the new job's PENDING
        record (a new id). ``Conflict`` if the job is not FAILED or its input is no longer kept."""
        return Progress.from_body(self._call("POST", _route(resource, job_id, "retry/")))

    def review(self, job_id: str, decision: str, text: str | None = None) -> dict[str, Any]:
        """Resolve an OCR job in REVIEW_REQUIRED: ``decision`` "approve" (SUCCESS) or "reject"
        (REJECTED_BAD_INPUT), with an optional corrected ``text``; the updated DB record. ``Conflict``
        when the job is not under review."""
        body: dict[str, Any] = self._call(
            "POST", _route("jobs", job_id, "review/"), json=self._review_body(decision, text)
        )
        return body

    def watch(
        self,
        job_id: str,
        resource: Resource = "jobs",
        *,
        timeout: float | None = None,
        polling: Polling | None = None,
    ) -> Iterator[Progress]:
        """Yield each new progress record until a terminal one (yielded last), polling adaptively.

        Network errors and 5xx answers are retried without giving up; ``timeout`` (seconds) bounds the
        whole watch with :class:`~jobpulse.errors.DeadlineExceeded`.
        """
        poller = Poller(polling or self.polling)
        deadline = Deadline(timeout)
        progress_url = _route(resource, job_id, "progress/")
        record_url = _route(resource, job_id)
        while True:
            step = self._progress_step(poller, self._get(progress_url, deadline, poller.headers()))
            if step.check_record:
                step = self._record_step(poller, self._get(record_url, deadline))
            if step.report is not None:
                yield step.report
            if step.final:
                return
            delay, ends = deadline.wait(step.delay)
            time.sleep(delay)
            if ends:
                raise deadline.expired()

    def wait(
        self,
        job_id: str,
        resource: Resource = "jobs",
        *,
        timeout: float | None = None,
        polling: Polling | None = None,
    ) -> Progress:
        """The job's terminal progress record, once it has one (see :meth:`watch`)."""
        last = None
        for last in self.watch(job_id, resource, timeout=timeout, polling=polling):  # noqa: B007
            pass
        assert last is not None and last.terminal
        return last


class AsyncClient(BaseClient):
    """The asyncio client; the same methods as :class:`Client`, awaited."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        polling: Polling | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, token=token, headers=headers, timeout=timeout, polling=polling)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.aclose()

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc, self.base_url) from exc

    async def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        return self._answer(await self._send(method, url, **kwargs))

    async def _get(
        self, url: str, deadline: Deadline, headers: Mapping[str, str] | None = None
    ) -> httpx.Response | None:
        try:
            return await self._http.get(url, headers=headers, timeout=self._timeout(deadline))
        except httpx.TransportError:
            return None

    async def submit(
        self,
        file: FileInput,
        *,
        kind: str = "spreadsheet_import",
        options: Options = None,
        filename: str | None = None,
    ) -> Progress:
        """Upload ``file`` (a path, bytes or a binary file) as a job of ``kind``; its PENDING record."""
        with self._submission(file, kind, options, filename) as (url, data, files):
            return Progress.from_body(await self._call("POST", url, data=data, files=files))

    async def submit_json(self, kind: str, input: Document = None, options: Document = None) -> Progress:
        """Submit a job of a JSON kind; see :meth:`Client.submit_json`."""
        body = self._json_submission(kind, input, options)
        return Progress.from_body(await self._call("POST", _route("jobs"), json=body))

    async def kinds(self) -> list[KindInfo]:
        """The job kinds this deployment accepts (``GET /kinds/``), sorted by name."""
        return self._kinds(await self._call("GET", "/kinds/"))

    async def submit_spreadsheet(
        self, file: FileInput, options: Options = None, *, filename: str | None = None
    ) -> Progress:
        """Submit a spreadsheet import (.xlsx, .xlsm, .xls, .ods, .csv)."""
        return await self.submit(file, kind="spreadsheet_import", options=options, filename=filename)

    async def submit_video(
        self, file: FileInput, options: Options = None, *, filename: str | None = None
    ) -> Progress:
        """Submit a video to transcode (``POST /media/videos/``)."""
        return await self.submit(file, kind="video", options=options, filename=filename)

    async def submit_ocr(
        self, file: FileInput, options: Options = None, *, filename: str | None = None
    ) -> Progress:
        """Submit an image for OCR (an ``ai_inference`` job)."""
        return await self.submit(file, kind="ai_inference", options=options, filename=filename)

    async def record(self, job_id: str, resource: Resource = "jobs") -> dict[str, Any]:
        """The DB-backed record (``GET /jobs/{id}/``): result, input, timestamps."""
        body: dict[str, Any] = await self._call("GET", _route(resource, job_id))
        return body

    async def records(
        self, resource: Resource = "jobs", *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the caller's records, newest first, and the cursor of the next page."""
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        body = await self._call("GET", _route(resource), params=params)
        return body["items"], body["next_cursor"]

    async def progress(self, job_id: str, resource: Resource = "jobs") -> Progress:
        """The live progress record, from Redis; ``state`` UNKNOWN when there is none."""
        return Progress.from_body(await self._call("GET", _route(resource, job_id, "progress/")))

    async def progress_many(self, job_ids: list[str]) -> dict[str, Progress]:
        """Progress of up to 500 jobs of any kind in one request, keyed by id as given."""
        return self._many(await self._call("POST", "/progress/batch/", json={"ids": job_ids}))

    async def cancel(self, job_id: str, resource: Resource = "jobs") -> Progress:
        """Ask for the job to stop; ``Conflict`` if it already ended."""
        return Progress.from_body(await self._call("POST", _route(resource, job_id, "cancel/")))

    async def delete(self, job_id: str, resource: Resource = "jobs") -> None:
        """Delete the job for good; see :meth:`Client.delete`."""
        self._no_content(await self._send("DELETE", _route(resource, job_id)))

    async def retry(self, job_id: str, resource: Resource = "jobs") -> Progress:
        """Run a FAILED job again as a new job; see :meth:`Client.retry`."""
        return Progress.from_body(await self._call("POST", _route(resource, job_id, "retry/")))

    async def review(self, job_id: str, decision: str, text: str | None = None) -> dict[str, Any]:
        """Resolve an OCR job in REVIEW_REQUIRED; see :meth:`Client.review`."""
        body: dict[str, Any] = await self._call(
            "POST", _route("jobs", job_id, "review/"), json=self._review_body(decision, text)
        )
        return body

    async def watch(
        self,
        job_id: str,
        resource: Resource = "jobs",
        *,
        timeout: float | None = None,
        polling: Polling | None = None,
    ) -> AsyncIterator[Progress]:
        """Yield each new progress record until a terminal one (yielded last); see :meth:`Client.watch`."""
        poller = Poller(polling or self.polling)
        deadline = Deadline(timeout)
        progress_url = _route(resource, job_id, "progress/")
        record_url = _route(resource, job_id)
        while True:
            step = self._progress_step(poller, await self._get(progress_url, deadline, poller.headers()))
            if step.check_record:
                step = self._record_step(poller, await self._get(record_url, deadline))
            if step.report is not None:
                yield step.report
            if step.final:
                return
            delay, ends = deadline.wait(step.delay)
            await asyncio.sleep(delay)
            if ends:
                raise deadline.expired()

    async def wait(
        self,
        job_id: str,
        resource: Resource = "jobs",
        *,
        timeout: float | None = None,
        polling: Polling | None = None,
    ) -> Progress:
        """The job's terminal progress record, once it has one (see :meth:`watch`)."""
        last = None
        async for last in self.watch(job_id, resource, timeout=timeout, polling=polling):  # noqa: B007
            pass
        assert last is not None and last.terminal
        return last
