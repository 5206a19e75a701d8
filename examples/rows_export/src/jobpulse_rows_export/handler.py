"""The ``rows_export`` handler: a finished spreadsheet import's rows, written to a CSV or XLSX file.

Rows are read a page at a time in file order, so memory stays flat however many rows the import has;
progress is reported after each page, which is also where a cancelled export stops. The file is written
under a temporary name and renamed once complete, so a link never points at half a file.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from jobpulse import BadInput, JobRun, State

from .kind import ExportRequest

__all__ = ["PAGE_ROWS", "export_rows", "safe_cell", "xlsx_cell"]

log = logging.getLogger(__name__)

PAGE_ROWS = 2_000  # rows read per query, and between progress reports
_SOURCE_KIND = "spreadsheet_import"
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_XLSX_MAX_CELL_CHARS = 32_767  # Excel refuses longer cells


def safe_cell(value: Any) -> Any:
    """``value`` as a cell that a spreadsheet program shows and never evaluates: text that would start
    a formula (``=``, ``+``, ``-``, ``@``, a tab or a carriage return) gets a leading apostrophe; lists
    and objects become JSON text."""
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def xlsx_cell(value: Any) -> Any:
    """``value`` as an XLSX cell: :func:`safe_cell`, once the characters XML cannot hold are removed (so
    that none of them hides a formula's ``=``), cut to the length Excel accepts."""
    if isinstance(value, str):
        value = ILLEGAL_CHARACTERS_RE.sub("", value)
    value = safe_cell(value)
    return value[:_XLSX_MAX_CELL_CHARS] if isinstance(value, str) else value


class _Writer(Protocol):
    def write(self, values: Sequence[Any]) -> None:
        """Write one row of cells (as they are stored; the writer makes them safe)."""

    def close(self) -> None:
        """Finish the file."""

    def abort(self) -> None:
        """Stop writing, leaving nothing but the partial file (which the caller removes)."""


class _CsvWriter:
    """UTF-8 with a byte order mark, which spreadsheet programs need to read anything but ASCII."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("w", encoding="utf-8-sig", newline="")
        self._csv = csv.writer(self._file)

    def write(self, values: Sequence[Any]) -> None:
        self._csv.writerow([safe_cell(value) for value in values])

    def close(self) -> None:
        self._file.close()

    def abort(self) -> None:
        self._file.close()


class _XlsxWriter:
    """openpyxl's write-only workbook: rows go to disk as they come."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._book = Workbook(write_only=True)
        self._sheet = self._book.create_sheet("rows")

    def write(self, values: Sequence[Any]) -> None:
        self._sheet.append([xlsx_cell(value) for value in values])

    def close(self) -> None:
        self._book.save(self._path)

    def abort(self) -> None:
        # The sheet's rows wait in a temporary file of openpyxl's until the workbook is saved; saving
        # only to delete would cost as much as the export so far, so that file is removed directly.
        stream = getattr(self._sheet, "_writer", None)
        if stream is not None:
            stream.close()
            stream.cleanup()


_WRITERS: Mapping[str, Callable[[Path], _Writer]] = {"csv": _CsvWriter, "xlsx": _XlsxWriter}


def _finished_import(job: JobRun, source_id: str) -> Any:
    """The owner's spreadsheet import ``source_id`` if it succeeded; anything else is the input's fault,
    told the same way whether the id is unknown or another owner's."""
    source = job.repository.get(source_id, owner=job.owner)
    if source is None or source.kind != _SOURCE_KIND or source.state != State.SUCCESS:
        raise BadInput(f"No finished spreadsheet import with id {source_id}.")
    return source


def _header(result: Mapping[str, Any], first_page: Iterable[Mapping[str, Any]]) -> list[str]:
    """The import's columns in order, then any other key the first rows have (the import's ``columns``
    lists every key its rows can have, so that is a fallback for records made otherwise)."""
    header = [c if isinstance(c, str) else str(c["name"]) for c in result.get("columns") or []]
    known = set(header)
    for data in first_page:
        for key in data:
            if key not in known:
                header.append(key)
                known.add(key)
    return header


def export_rows(job: JobRun) -> dict[str, Any]:
    """Write the rows of the import ``job.input.job_id`` to ``rows-<id>.<format>``; the result links it."""
    request: ExportRequest = job.input
    source = _finished_import(job, request.job_id)
    name = f"rows-{source.id}.{request.format}"
    final = job.output_path(name)
    partial = job.output_path(f"{name}.part")
    writer = _WRITERS[request.format](partial)
    try:
        written = _write_rows(job, source, writer, request.format)
        writer.close()
        partial.replace(final)
    except BaseException:
        # Cancelled or failed: no half-written file is left for anything to serve.
        try:
            writer.abort()
        finally:
            partial.unlink(missing_ok=True)
        raise
    return {
        "rows": written,
        "format": request.format,
        "file": name,
        "bytes": final.stat().st_size,
        "download": job.file_link(name),
    }


def _write_rows(job: JobRun, source: Any, writer: _Writer, fmt: str) -> int:
    """Write the import's header and rows, a page at a time, reporting after each; how many rows."""
    total = int((source.result or {}).get("rows_imported") or 0)
    job.update(0, total, stage="writing", message=f"Writing {total:,} rows as {fmt.upper()}")
    page = job.repository.rows(source.id, after=0, limit=PAGE_ROWS)
    header = _header(source.result or {}, (row.data for row in page))
    writer.write(header)
    columns = set(header)
    written = unlisted = 0
    while page:
        for row in page:
            data = row.data
            unlisted += not columns.issuperset(data)
            writer.write([data.get(column) for column in header])
        written += len(page)
        job.update(
            written,
            max(total, written),
            stage="writing",
            message=f"Wrote {written:,} of {total:,} rows",
            details={"rows_written": written, "format": fmt},
        )
        page = job.repository.rows(source.id, after=page[-1].row_number, limit=PAGE_ROWS)
    if unlisted:
        log.warning("export %s: %d rows had columns the import does not list; left out", job.id, unlisted)
    return written
