"""The ``rows_export`` kind, declared: everything the API needs to accept, route and describe its jobs.

This module is imported by the API as well as by workers, so it names its handler by a string and
never imports it (nor openpyxl).
"""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from jobpulse import JsonInput, Kind

__all__ = ["KIND", "ExportRequest"]


class ExportRequest(BaseModel):
    """What to export: ``{"job_id": "<a spreadsheet import's id>", "format": "csv" | "xlsx"}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str
    """The id of one of your spreadsheet imports that ended in SUCCESS."""
    format: Literal["csv", "xlsx"] = "csv"

    @field_validator("job_id")
    @classmethod
    def _a_job_id(cls, value: str) -> str:
        try:
            return str(uuid.UUID(value))  # the canonical lowercase form jobpulse's ids have
        except ValueError:
            raise ValueError("must be a job id (a UUID)") from None


KIND = Kind(
    name="rows_export",
    queue="exports",
    input=JsonInput(ExportRequest),
    options=None,
    handler="jobpulse_rows_export.handler:export_rows",
    result=(
        "{'rows': rows written, 'format': 'csv' | 'xlsx', 'file': the file's name, 'bytes': its size, "
        "'download': a signed link that works without a token}"
    ),
    description="Export the rows of a finished spreadsheet import as a CSV or XLSX file.",
    label="rows export",
)
