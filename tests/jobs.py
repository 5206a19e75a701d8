"""Helpers that submit jobs and watch them, as a client would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

CSV = b"name,age\nAda,36\nGrace,45\n"


async def submit_csv(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    content: bytes = CSV,
    filename: str = "people.csv",
    options: str | None = None,
) -> httpx.Response:
    data = {"kind": "spreadsheet_import"}
    if options is not None:
        data["options"] = options
    return await client.post(
        "/jobs/", headers=auth, data=data, files={"file": (filename, content, "text/csv")}
    )


def submit_file(
    client: httpx.Client, auth: dict[str, str], content: bytes, filename: str, options: str | None = None
) -> httpx.Response:
    data = {"kind": "spreadsheet_import"}
    if options is not None:
        data["options"] = options
    return client.post("/jobs/", headers=auth, data=data, files={"file": (filename, content)})


def poll_until_terminal(
    client: httpx.Client,
    auth: dict[str, str],
    job_id: str,
    timeout: float = 120.0,
    interval: float = 0.05,
    base: str = "/jobs",
) -> list[dict[str, Any]]:
    """Poll the progress endpoint (of ``base``: ``/media/videos`` for videos) until a terminal state;
    every body seen, in order."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"{base}/{job_id}/progress/", headers=auth).json()
        seen.append(body)
        if body["terminal"]:
            return seen
        time.sleep(interval)
    raise AssertionError(f"job {job_id} did not finish; last seen {seen[-1] if seen else None}")


async def apoll_until(
    client: httpx.AsyncClient, auth: dict[str, str], job_id: str, states: set[str], timeout: float = 60.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = (await client.get(f"/jobs/{job_id}/progress/", headers=auth)).json()
        if body["state"] in states:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {states}")


def wait_for(check: Callable[[], T], what: str, timeout: float = 60.0) -> T:
    """Poll ``check`` until it returns something truthy, and return that; fail saying ``what`` never
    happened after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return value
