"""Spreadsheet imports end to end: the real API server, a real Celery worker, real Redis and DB."""

from __future__ import annotations

import io
import itertools
import tempfile
import time
import uuid
import zipfile
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from openpyxl import Workbook

from jobpulse.broker import create_celery
from jobpulse.kinds import KindRegistry
from jobpulse.settings import Settings
from jobpulse.spreadsheet.kind import KIND as SPREADSHEET
from tests.jobs import poll_until_terminal, submit_file
from tests.services import Worker
from tests.test_spreadsheet_reader import write_ods

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]


def xlsx_bytes(rows: int) -> bytes:
    book = Workbook(write_only=True)
    sheet = book.create_sheet("people")
    sheet.append(["id", "name", "email", "born", "score"])
    for n in range(1, rows + 1):
        sheet.append([n, f"person {n}", f"p{n}@example.com", date(1990, 1, 1 + n % 28), n * 0.5])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def assert_monotonic(seen: list[dict[str, Any]]) -> None:
    states = [body["state"] for body in seen]
    order = ["PENDING", "RUNNING", "SUCCESS"]
    ranks = [order.index(s) for s in states if s in order]
    assert ranks == sorted(ranks), states
    versions = [body["version"] for body in seen]
    assert versions == sorted(versions)
    for before, after in itertools.pairwise(seen):
        if (
            before["state"] == after["state"]
            and before["percent"] is not None
            and after["percent"] is not None
        ):
            assert after["percent"] >= before["percent"], (before, after)


def test_a_50000_row_xlsx_imports_with_monotonic_progress(http: httpx.Client, auth: dict[str, str]) -> None:
    schema = (
        '{"sheet": "people", "columns": [{"name": "id", "type": "integer", "required": true},'
        '{"name": "email", "type": "email", "required": true}, {"name": "born", "type": "date"},'
        '{"name": "score", "type": "number"}]}'
    )
    response = submit_file(http, auth, xlsx_bytes(50_000), "people.xlsx", options=schema)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    seen = poll_until_terminal(http, auth, job_id)
    assert seen[-1]["state"] == "SUCCESS", seen[-1]
    assert_monotonic(seen)
    running = [body for body in seen if body["state"] == "RUNNING"]
    assert len({body["percent"] for body in running}) >= 3  # the bar moved while we watched
    assert any(body["total"] == 50_000 for body in running)
    assert seen[-1]["percent"] == 100 and seen[-1]["poll_after_ms"] is None

    record = http.get(f"/jobs/{job_id}/", headers=auth).json()
    assert record["state"] == "SUCCESS"
    assert record["result"]["rows_total"] == 50_000
    assert record["result"]["rows_imported"] == 50_000
    assert record["result"]["rows_rejected"] == 0
    rows = http.get(f"/jobs/{job_id}/rows/", headers=auth, params={"limit": 2}).json()
    assert [row["row_number"] for row in rows["items"]] == [2, 3]
    assert rows["items"][0]["data"] == {
        "id": 1,
        "name": "person 1",
        "email": "p1@example.com",
        "born": "1990-01-02",
        "score": 0.5,
    }
    last = http.get(f"/jobs/{job_id}/rows/", headers=auth, params={"cursor": "50000", "limit": 10}).json()
    assert [row["row_number"] for row in last["items"]] == [50001]
    assert last["next_cursor"] is None


def test_a_cp949_csv_imports_with_rejected_rows_reported(http: httpx.Client, auth: dict[str, str]) -> None:
    text = "이름;나이;도시\n홍길동;30;서울\n김철수;마흔;부산\n이영희;25;대구\n"
    options = '{"columns": [{"name": "나이", "type": "integer", "required": true}]}'
    response = submit_file(http, auth, text.encode("cp949"), "사람.csv", options=options)
    assert response.status_code == 202
    job_id = response.json()["id"]
    assert poll_until_terminal(http, auth, job_id)[-1]["state"] == "SUCCESS"
    record = http.get(f"/jobs/{job_id}/", headers=auth).json()
    result = record["result"]
    assert (result["rows_imported"], result["rows_rejected"]) == (2, 1)
    assert result["errors"][0]["row"] == 3 and result["errors"][0]["column"] == "나이"
    rows = http.get(f"/jobs/{job_id}/rows/", headers=auth).json()["items"]
    assert rows[0]["data"] == {"이름": "홍길동", "나이": 30, "도시": "서울"}
    assert record["input"]["filename"] == "사람.csv"


def _truncated_xlsx() -> bytes:
    whole = xlsx_bytes(200)
    return whole[: len(whole) // 2]


def _zip_bomb() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("xl/worksheets/sheet1.xml", b"\0" * (600 * 1024 * 1024))
    return out.getvalue()


def _encrypted() -> bytes:
    header = bytes.fromhex("D0CF11E0A1B11AE1") + b"\0" * 504
    return (
        header + "EncryptionInfo".encode("utf-16-le") + b"\0" * 1024 + "EncryptedPackage".encode("utf-16-le")
    )


def _no_sheets() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return write_ods(Path(folder) / "none.ods", {}).read_bytes()


BAD_INPUTS: dict[str, tuple[str, bytes, str | None]] = {
    "random bytes": ("data.xlsx", bytes(range(256)) * 40, None),
    "pdf renamed": ("report.xlsx", b"%PDF-1.4\n" + b"x" * 2000, None),
    "png renamed csv": ("photo.csv", bytes.fromhex("89504E470D0A1A0A") + bytes(range(256)) * 8, None),
    "truncated xlsx": ("cut.xlsx", _truncated_xlsx(), None),
    "encrypted": ("secret.xlsx", _encrypted(), None),
    "only a header": ("header.csv", b"a,b,c\n", None),
    "missing required column": (
        "people.csv",
        b"name,age\nAda,36\n",
        '{"columns": [{"name": "email", "required": true}]}',
    ),
    "no such sheet": ("people.xlsx", xlsx_bytes(3), '{"sheet": "Sheet9"}'),
    "zip bomb": ("bomb.xlsx", _zip_bomb(), None),
    "no sheets": ("none.ods", _no_sheets(), None),
    "all rows invalid": ("n.csv", b"n\nx\ny\n", '{"columns": [{"name": "n", "type": "integer"}]}'),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_rejected_with_a_plain_reason(
    http: httpx.Client, auth: dict[str, str], settings: Settings, case: str
) -> None:
    filename, content, options = BAD_INPUTS[case]
    response = submit_file(http, auth, content, filename, options=options)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    final = poll_until_terminal(http, auth, job_id)[-1]
    assert final["state"] == "REJECTED_BAD_INPUT", final
    reason = final["error_reason"]
    assert reason and len(reason) < 400
    for leak in ("Traceback", str(settings.data_dir), "/tmp", "Error(", "input."):
        assert leak not in reason, reason
    record = http.get(f"/jobs/{job_id}/", headers=auth).json()
    assert record["state"] == "REJECTED_BAD_INPUT" and record["error_reason"] == reason
    assert http.get(f"/jobs/{job_id}/rows/", headers=auth).json()["items"] == []


def test_too_many_rows_is_rejected(http: httpx.Client, auth: dict[str, str], worker: Worker) -> None:
    # The session worker's limit is the default (1,000,000); 1,000,001 CSV rows of one short column.
    content = b"n\n" + b"1\n" * 1_000_001
    job_id = submit_file(http, auth, content, "many.csv").json()["id"]
    final = poll_until_terminal(http, auth, job_id)[-1]
    assert final["state"] == "REJECTED_BAD_INPUT"
    assert "1,000,000" in final["error_reason"]


def test_cancel_a_running_import(http: httpx.Client, auth: dict[str, str], settings: Settings) -> None:
    content = b"id,name\n" + b"".join(b"%d,name %d\n" % (n, n) for n in range(400_000))
    job_id = submit_file(http, auth, content, "big.csv").json()["id"]
    deadline = time.monotonic() + 60
    while http.get(f"/jobs/{job_id}/progress/", headers=auth).json()["state"] != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    response = http.post(f"/jobs/{job_id}/cancel/", headers=auth)
    assert response.status_code == 202
    assert response.json()["state"] == "CANCELLED"
    time.sleep(1.5)  # the worker notices at its next report, discards its rows, and moves on
    assert http.get(f"/jobs/{job_id}/progress/", headers=auth).json()["state"] == "CANCELLED"
    record = http.get(f"/jobs/{job_id}/", headers=auth).json()
    assert record["state"] == "CANCELLED" and record["result"] is None
    assert http.get(f"/jobs/{job_id}/rows/", headers=auth).json()["items"] == []
    assert http.post(f"/jobs/{job_id}/cancel/", headers=auth).status_code == 409
    # The worker is alive and takes the next job.
    after = submit_file(http, auth, b"a\n1\n", "small.csv").json()["id"]
    assert poll_until_terminal(http, auth, after)[-1]["state"] == "SUCCESS"


def test_a_duplicated_delivery_produces_one_result(
    http: httpx.Client, auth: dict[str, str], settings: Settings
) -> None:
    content = b"id\n" + b"".join(b"%d\n" % n for n in range(30_000))
    job_id = submit_file(http, auth, content, "dup.csv").json()["id"]
    celery = create_celery(settings, KindRegistry([SPREADSHEET]))
    name, queue = SPREADSHEET.task, SPREADSHEET.queue
    for _ in range(2):
        celery.send_task(name, args=[job_id], queue=queue)
    celery.close()
    final = poll_until_terminal(http, auth, job_id)[-1]
    assert final["state"] == "SUCCESS"
    time.sleep(1.0)  # let the duplicates run (or retry) to their end
    record = http.get(f"/jobs/{job_id}/", headers=auth).json()
    assert record["result"]["rows_imported"] == 30_000
    count = 0
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = http.get(f"/jobs/{job_id}/rows/", headers=auth, params=params).json()
        count += len(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert count == 30_000
    assert http.get(f"/jobs/{job_id}/progress/", headers=auth).json()["version"] == final["version"]


def test_unknown_job_message_is_dropped(settings: Settings, http: httpx.Client) -> None:
    celery = create_celery(settings, KindRegistry([SPREADSHEET]))
    name, queue = SPREADSHEET.task, SPREADSHEET.queue
    celery.send_task(name, args=[str(uuid.uuid4())], queue=queue)
    celery.close()
    assert http.get("/healthz").status_code == 200


def test_uploads_are_removed_once_the_job_ends(
    http: httpx.Client, auth: dict[str, str], settings: Settings
) -> None:
    job_id = submit_file(http, auth, b"a\n1\n", "x.csv").json()["id"]
    poll_until_terminal(http, auth, job_id)
    deadline = time.monotonic() + 5
    while (Path(settings.upload_dir) / job_id).exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_an_empty_upload_is_refused_at_the_door(http: httpx.Client, auth: dict[str, str]) -> None:
    response = submit_file(http, auth, b"", "empty.csv")
    assert response.status_code == 400
    assert response.json() == {"error": {"code": "empty_file", "message": "The uploaded file is empty."}}
