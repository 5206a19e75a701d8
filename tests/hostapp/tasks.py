"""The host application's own Celery app and task, as a web backend would write them.

The task's body reports progress through jobpulse, which runs the job's lifecycle around it. Nothing
is read or opened at import: the tracker reads its settings from the environment at first use, and the
app takes its configuration from the tracker when Celery first needs it. Run its worker with::

    celery -A tests.hostapp.tasks worker -Q hostapp-reports
"""

from __future__ import annotations

import time
from typing import Any

from celery import Celery

from jobpulse.errors import BadInput, JobFailed, ServiceUnavailable
from jobpulse.handler import JobRun
from jobpulse.tracker import Tracker
from tests.hostapp.kinds import ReportRequest

tracker = Tracker()
app = Celery("hostapp", set_as_current=False)
app.add_defaults(tracker.celery_config)

_EVERY = 250  # rows between progress reports when the task runs at full speed


@app.task(  # type: ignore[untyped-decorator]
    name="tests.hostapp.tasks.build_report",
    shared=False,  # this app's task only (the test process makes jobpulse's apps too)
    autoretry_for=(ServiceUnavailable,),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=None,
)
@tracker.tracked
def build_report(job: JobRun) -> dict[str, Any]:
    """Write ``rows`` rows of a report, reporting progress; ``fail`` ends it as the tests ask."""
    request: ReportRequest = job.input
    if request.fail == "bad_input":
        raise BadInput("The report needs at least one column; choose one and try again.")
    if request.fail == "job_failed":
        raise JobFailed("The reporting service is down; try again in an hour.")
    if request.fail == "crash":
        raise RuntimeError("/srv/hostapp/reports.py: connection to 10.0.0.7 refused")  # never shown
    for done in range(1, request.rows + 1):
        if request.pace_ms:
            time.sleep(request.pace_ms / 1000)
        if request.pace_ms or done % _EVERY == 0 or done == request.rows:
            job.update(done, request.rows, stage="writing rows", details={"rows_done": done})
    return {"rows": request.rows}
