"""The example plugin (examples/rows_export) end to end: its kind found through its entry point, jobs
submitted as JSON to the real API, run by a real ``jobpulse worker``, progress polled from Redis alone,
and the file fetched through the signed link its handler made."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from jobpulse_rows_export.handler import safe_cell, xlsx_cell
from openpyxl import load_workbook

from jobpulse.auth import mint_token, url_signature
from jobpulse.settings import Settings
from tests.conftest import SECRET
from tests.jobs import apoll_until, submit_csv, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]

TERMINAL = {"SUCCESS", "FAILED", "REJECTED_BAD_INPUT", "CANCELLED"}
# Text a spreadsheet program would take for a formula, beside plain text.
NOTES = ['=HYPERLINK("http://evil.example","x")', "+1", "-2", "@SUM(A1)", "a, b", 'say "hi"', "서울", ""]


def people_csv(rows: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["name", "score", "note"])
    for n in range(1, rows + 1):
        writer.writerow([f"person {n}", n, NOTES[n % len(NOTES)]])
    return out.getvalue().encode()


async def import_rows(client: httpx.AsyncClient, auth: dict[str, str], rows: int) -> str:
    """A spreadsheet import of ``rows`` rows, run to SUCCESS; its id."""
    response = await submit_csv(client, auth, people_csv(rows), "people.csv")
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    body = await apoll_until(client, auth, job_id, TERMINAL, timeout=120)
    assert body["state"] == "SUCCESS", body
    return job_id


async def submit_export(
    client: httpx.AsyncClient, auth: dict[str, str], source: str, fmt: str = "csv"
) -> httpx.Response:
    document = {"kind": "rows_export", "input": {"job_id": source, "format": fmt}}
    return await client.post("/jobs/", headers=auth, json=document)


async def poll_without_sql(
    client: httpx.AsyncClient, auth: dict[str, str], job_id: str, app: Any, timeout: float = 120
) -> list[dict[str, Any]]:
    """Every progress body until a terminal one; each answer read no SQL at all."""
    statements = app.state.services.statements
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not seen or not seen[-1]["terminal"]:
        assert time.monotonic() < deadline, f"export {job_id} did not finish: {seen[-1:]}"
        before = statements.total
        response = await client.get(f"/jobs/{job_id}/progress/", headers=auth)
        assert statements.total == before, "the progress endpoint ran SQL"
        assert response.status_code == 200
        seen.append(response.json())
    return seen


async def imported(client: httpx.AsyncClient, auth: dict[str, str], job_id: str) -> list[dict[str, Any]]:
    """What the import stored, row by row, read through the API."""
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1000} | ({"cursor": cursor} if cursor else {})
        page = (await client.get(f"/jobs/{job_id}/rows/", headers=auth, params=params)).json()
        rows.extend(item["data"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return rows


def guarded(value: Any) -> Any:
    """A value as the export writes it: formula-like text behind an apostrophe."""
    if isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value
    return value


def read_back(content: bytes, fmt: str) -> list[list[Any]]:
    if fmt == "csv":
        assert content.startswith("\ufeff".encode())  # spreadsheet programs read UTF-8 by its BOM
        return list(csv.reader(io.StringIO(content.decode("utf-8-sig"), newline="")))
    book = load_workbook(io.BytesIO(content), read_only=True)
    try:
        rows = [list(row) for row in book["rows"].iter_rows(values_only=True)]
    finally:
        book.close()
    # A row whose last cells are empty reads back shorter.
    return [["" if v is None else v for v in row + [None] * (len(rows[0]) - len(row))] for row in rows]


def expected_table(columns: list[str], rows: list[dict[str, Any]], fmt: str) -> list[list[Any]]:
    table = [columns]
    for data in rows:
        cells = [guarded(data.get(column)) for column in columns]
        # CSV keeps text only; an empty XLSX cell reads back as None (shown here as "").
        table.append(["" if v is None else (str(v) if fmt == "csv" else v) for v in cells])
    return table


async def test_the_installed_plugin_is_listed_with_its_input_schema(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    kinds = {item["name"]: item for item in (await client.get("/kinds/", headers=auth)).json()["items"]}
    export = kinds["rows_export"]
    assert export["resource"] == "jobs" and export["options"] is None
    assert export["input"]["type"] == "json"
    assert set(export["input"]["schema"]["properties"]) == {"job_id", "format"}
    assert export["submit"] == {"method": "POST", "path": "/jobs/"}


def test_the_api_loads_the_declaration_but_never_the_handler(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from jobpulse.api.app import create_app\n"
        "from jobpulse.settings import Settings\n"
        f"create_app(Settings(redis_url='redis://127.0.0.1:1/0', database_url='sqlite:///{tmp_path}/db',"
        f" secret_key={SECRET!r}, data_dir={str(tmp_path)!r}))\n"
        "print(*sorted(m for m in sys.modules if m.startswith(('jobpulse_rows_export', 'openpyxl'))))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert run.stdout.split() == ["jobpulse_rows_export", "jobpulse_rows_export.kind"]


def test_cells_that_would_be_formulas_are_made_text() -> None:
    for text in ["=1+1", "+1", "-1", "@A1", "\t=1", "\r=1"]:
        assert safe_cell(text) == "'" + text
    for value in ["1+1", "a=b", " =1", "", None, -1, 2.5, True]:
        assert safe_cell(value) == value
    assert safe_cell({"a": [1]}) == '{"a": [1]}'
    # A character XML cannot hold is removed before the guard, so it cannot hide an "=".
    assert xlsx_cell("\x01=cmd|' /C calc'!A0") == "'=cmd|' /C calc'!A0"
    assert xlsx_cell("x" * 40_000) == "x" * 32_767


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
async def test_an_import_is_exported_and_downloaded_through_its_signed_link(
    client: httpx.AsyncClient, auth: dict[str, str], app: Any, fmt: str
) -> None:
    source = await import_rows(client, auth, 6_000)
    response = await submit_export(client, auth, source, fmt)
    assert response.status_code == 202, response.text
    export_id = response.json()["id"]
    assert response.json()["kind"] == "rows_export"

    seen = await poll_without_sql(client, auth, export_id, app)
    last = seen[-1]
    assert last["state"] == "SUCCESS", last
    versions = [body["version"] for body in seen]
    assert versions == sorted(versions)
    assert [body["state"] for body in seen if body["state"] not in ("PENDING", "RUNNING")] == ["SUCCESS"]
    with_details = [body["details"] for body in seen if body.get("details")]
    assert with_details, seen
    assert with_details[-1] == {"rows_written": 6_000, "format": fmt}
    assert (last["current"], last["total"], last["percent"]) == (6_000, 6_000, 100)

    record = (await client.get(f"/jobs/{export_id}/", headers=auth)).json()
    assert record["state"] == "SUCCESS" and record["error_reason"] is None
    assert record["input"]["data"] == {"job_id": source, "format": fmt}
    result = record["result"]
    name = f"rows-{source}.{fmt}"
    assert {k: result[k] for k in ("rows", "format", "file")} == {"rows": 6_000, "format": fmt, "file": name}
    link = result["download"]
    assert link.startswith(f"/jobs/{export_id}/files/{name}?expires=")

    download = await client.get(link)  # no token: the signature is the permission
    assert download.status_code == 200, download.text
    assert len(download.content) == result["bytes"]
    source_record = (await client.get(f"/jobs/{source}/", headers=auth)).json()
    columns = source_record["result"]["columns"]
    assert columns == ["name", "score", "note"]
    rows = await imported(client, auth, source)
    assert read_back(download.content, fmt) == expected_table(columns, rows, fmt)


async def test_a_signed_link_tampered_with_or_expired_is_refused(
    client: httpx.AsyncClient, auth: dict[str, str], owner: str
) -> None:
    source = await import_rows(client, auth, 10)
    export_id = (await submit_export(client, auth, source)).json()["id"]
    assert (await apoll_until(client, auth, export_id, TERMINAL))["state"] == "SUCCESS"
    link = (await client.get(f"/jobs/{export_id}/", headers=auth)).json()["result"]["download"]
    path = urlsplit(link).path
    name = path.rsplit("/", 1)[1]
    query = parse_qs(urlsplit(link).query)
    expires, signature = query["expires"][0], query["signature"][0]
    assert (await client.get(link)).status_code == 200

    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    past = int(time.time()) - 60
    refused = {
        "another signature": f"{path}?expires={expires}&signature={flipped}",
        "a later expiry": f"{path}?expires={int(expires) + 3600}&signature={signature}",
        "another file": f"{path}x?expires={expires}&signature={signature}",
        "another job": f"/jobs/{uuid.uuid4()}/files/{name}?expires={expires}&signature={signature}",
        "expired": f"{path}?expires={past}&signature={url_signature(SECRET, path, past)}",
        "no signature, no token": path,
    }
    for case, url in refused.items():
        response = await client.get(url)
        assert response.status_code == 401, (case, response.text)
    assert (await client.get(refused["expired"])).json()["error"]["code"] == "link_expired"
    # The owner's token reaches the file too; anyone else's does not.
    assert (await client.get(path, headers=auth)).status_code == 200
    stranger = {"Authorization": f"Bearer {mint_token(SECRET, f'{owner}-other', 60)}"}
    assert (await client.get(path, headers=stranger)).status_code == 404


async def test_an_id_that_is_not_a_finished_import_of_yours_is_rejected(
    client: httpx.AsyncClient, auth: dict[str, str], owner: str
) -> None:
    stranger = {"Authorization": f"Bearer {mint_token(SECRET, f'{owner}-other', 600)}"}
    theirs = await import_rows(client, stranger, 10)
    unfinished = (await submit_csv(client, auth, b"a,b,c\n", "header.csv")).json()["id"]  # only a header
    assert (await apoll_until(client, auth, unfinished, TERMINAL))["state"] == "REJECTED_BAD_INPUT"
    mine = await import_rows(client, auth, 10)
    an_export = (await submit_export(client, auth, mine)).json()["id"]
    assert (await apoll_until(client, auth, an_export, TERMINAL))["state"] == "SUCCESS"

    for source in (str(uuid.uuid4()), theirs, unfinished, an_export):
        export_id = (await submit_export(client, auth, source)).json()["id"]
        body = await apoll_until(client, auth, export_id, TERMINAL)
        reason = f"No finished spreadsheet import with id {source}."
        assert (body["state"], body["error_reason"]) == ("REJECTED_BAD_INPUT", reason)
        record = (await client.get(f"/jobs/{export_id}/", headers=auth)).json()
        assert (record["state"], record["error_reason"]) == ("REJECTED_BAD_INPUT", reason)
        assert record["result"] is None


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"job_id": "not-a-job-id"}, "job_id"),
        ({"job_id": "12345"}, "job_id"),
        ({}, "job_id"),
        ({"job_id": str(uuid.uuid4()), "format": "pdf"}, "format"),
        ({"job_id": str(uuid.uuid4()), "sheet": "x"}, "sheet"),
    ],
)
async def test_a_malformed_input_is_refused_at_submission(
    client: httpx.AsyncClient, auth: dict[str, str], document: dict[str, Any], field: str
) -> None:
    response = await client.post("/jobs/", headers=auth, json={"kind": "rows_export", "input": document})
    assert response.status_code == 422, response.text
    assert field in response.json()["error"]["message"]
    assert (await client.get("/jobs/", headers=auth)).json()["items"] == []


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
async def test_cancel_while_it_runs_leaves_no_file(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, fmt: str
) -> None:
    # 200,000 rows take seconds to export (XLSX several times longer), with a report every 2,000.
    source = await import_rows(client, auth, 200_000)
    export_id = (await submit_export(client, auth, source, fmt)).json()["id"]

    async def writing() -> dict[str, Any] | None:
        body: dict[str, Any] = (await client.get(f"/jobs/{export_id}/progress/", headers=auth)).json()
        assert body["state"] in ("PENDING", "RUNNING"), body
        running = body["state"] == "RUNNING" and (body.get("details") or {}).get("rows_written", 0) > 0
        return body if running else None

    deadline = time.monotonic() + 60
    while (body := await writing()) is None:
        assert time.monotonic() < deadline, "the export never reported rows written"
    assert body["details"]["rows_written"] < 200_000
    folder = settings.media_dir / export_id
    # A CSV grows under a temporary name; openpyxl keeps an XLSX's rows elsewhere until it is saved.
    assert [p.name for p in folder.iterdir()] == ([f"rows-{source}.csv.part"] if fmt == "csv" else [])

    response = await client.post(f"/jobs/{export_id}/cancel/", headers=auth)
    assert response.status_code == 202, response.text
    assert (await apoll_until(client, auth, export_id, TERMINAL))["state"] == "CANCELLED"
    wait_for(lambda: not any(Path(folder).iterdir()), "the partial file to be removed", timeout=30)

    record = (await client.get(f"/jobs/{export_id}/", headers=auth)).json()
    assert (record["state"], record["result"]) == ("CANCELLED", None)
    response = await client.get(f"/jobs/{export_id}/files/rows-{source}.{fmt}", headers=auth)
    assert response.status_code == 404
