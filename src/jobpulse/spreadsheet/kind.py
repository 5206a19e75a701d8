"""The ``spreadsheet_import`` kind: a spreadsheet's rows, validated and saved (handler: :mod:`.job`)."""

from __future__ import annotations

from jobpulse.kinds import Kind, Upload
from jobpulse.spreadsheet.options import ImportOptions

__all__ = ["KIND"]

KIND = Kind(
    name="spreadsheet_import",
    label="import",
    description="Import a spreadsheet's rows, validated against an optional column schema.",
    queue="imports",
    input=Upload(
        suffixes=(".xlsx", ".xlsm", ".xls", ".ods", ".csv", ".tsv", ".txt"),
        max_bytes="max_upload_bytes",
        content_types=(
            "text/csv",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "application/vnd.ms-excel.sheet.macroEnabled.12",
            "application/vnd.ms-excel",
            "application/vnd.oasis.opendocument.spreadsheet",
        ),
    ),
    options=ImportOptions,
    handler="jobpulse.spreadsheet.job:SpreadsheetImport",
    result=(
        "format, sheet, columns, rows_total, rows_imported, rows_rejected, errors (the first "
        "spreadsheet_max_errors), errors_total, errors_truncated; the rows at GET /jobs/{id}/rows/"
    ),
)
