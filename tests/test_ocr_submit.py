"""Submitting OCR jobs at the door: options, their default, and the OCR upload limit (kind before or after
the file). What the file holds is judged by the worker (tests/test_ocr_jobs.py), not here."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from jobpulse.settings import Settings
from tests.conftest import app_client
from tests.ocr_support import render_page

pytestmark = pytest.mark.integration

PAGE = render_page()


async def _submit(
    client: httpx.AsyncClient, auth: dict[str, str], options: str | None = None, content: bytes = PAGE
) -> httpx.Response:
    data = {"kind": "ai_inference", **({"options": options} if options is not None else {})}
    return await client.post("/jobs/", headers=auth, data=data, files={"file": ("page.png", content)})


async def test_a_submission_records_the_threshold_it_will_be_judged_by(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    reply = await _submit(client, auth)
    assert reply.status_code == 202, reply.text
    assert (reply.json()["kind"], reply.json()["state"]) == ("ai_inference", "PENDING")
    record = (await client.get(f"/jobs/{reply.json()['id']}/", headers=auth)).json()
    assert record["options"] == {"min_confidence": settings.ocr_min_confidence}
    assert record["input"]["filename"] == "page.png" and record["input"]["size_bytes"] == len(PAGE)
    chosen = await _submit(client, auth, '{"min_confidence": 0.95}')
    record = (await client.get(f"/jobs/{chosen.json()['id']}/", headers=auth)).json()
    assert record["options"] == {"min_confidence": 0.95}


@pytest.mark.parametrize(
    "options",
    [
        '{"min_confidence": 2}',
        '{"min_confidence": "0.9"}',
        '{"min_confidence": true}',
        '{"colour": 1}',
        "[1]",
        "{",
    ],
)
async def test_invalid_options_are_422_naming_the_problem(
    client: httpx.AsyncClient, auth: dict[str, str], options: str
) -> None:
    reply = await _submit(client, auth, options)
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error["code"] == "invalid_options"
    assert error["message"].startswith("Invalid OCR options: ")


@pytest.fixture
async def small_ocr_limit(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings.model_copy(update={"ocr_max_upload_bytes": 20_000})) as client:
        yield client


async def test_the_ocr_limit_holds_whether_the_kind_comes_before_or_after_the_file(
    small_ocr_limit: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    big = b"\x89PNG" + bytes(30_000)
    headers = {**auth, "content-type": "multipart/form-data; boundary=b"}
    kind = b'--b\r\nContent-Disposition: form-data; name="kind"\r\n\r\nai_inference\r\n'
    file = b'--b\r\nContent-Disposition: form-data; name="file"; filename="p.png"\r\n\r\n' + big + b"\r\n"
    for body in (kind + file + b"--b--\r\n", file + kind + b"--b--\r\n"):
        reply = await small_ocr_limit.post("/jobs/", headers=headers, content=body)
        assert reply.status_code == 413, reply.text
        assert reply.json()["error"] == {
            "code": "payload_too_large",
            "message": "The file is larger than the limit of 19 KB.",
        }
    assert not any(settings.upload_dir.glob("*/input.png")) or all(
        path.stat().st_size != len(big) for path in settings.upload_dir.glob("*/input.png")
    )
    # A spreadsheet of the same size is under its own (larger) limit.
    csv = b"a\n" + b"1\n" * 15_000
    reply = await small_ocr_limit.post(
        "/jobs/", headers=auth, data={"kind": "spreadsheet_import"}, files={"file": ("a.csv", csv)}
    )
    assert reply.status_code == 202


async def test_an_empty_image_is_refused_at_the_door(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    reply = await _submit(client, auth, content=b"")
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "empty_file"
