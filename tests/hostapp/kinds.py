"""The host application's job kind: its jobs are run by its own Celery task (``tests.hostapp.tasks``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from jobpulse.kinds import JsonInput, Kind


class ReportRequest(BaseModel):
    """What a report build takes; ``fail`` and ``pace_ms`` let the tests steer the task."""

    model_config = ConfigDict(extra="forbid")

    rows: int = Field(ge=1, le=100_000)
    fail: Literal["bad_input", "crash", "job_failed"] | None = None
    pace_ms: int = Field(0, ge=0, le=1000)  # a pause per row, so that a test can cancel the job midway


KINDS = [
    Kind(
        name="report_build",
        handler=None,
        queue="hostapp-reports",
        task="tests.hostapp.tasks.build_report",
        input=JsonInput(ReportRequest),
        result="{'rows': the number of rows written}",
        description="A report the host application builds in its own Celery task.",
    )
]
