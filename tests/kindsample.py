"""A job kind declared in a plain module (``JOBPULSE_KIND_MODULES=tests.kindsample``), not a package: its
declaration and its handler in one file, as a small application would write them."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from jobpulse import BadInput, JobFailed, JobRun, JsonInput, Kind


class CountInput(BaseModel):
    """Count to ``to``; ``then`` says how the job ends."""

    model_config = ConfigDict(extra="forbid")

    to: int = Field(ge=1, le=1_000_000)
    then: Literal["succeed", "reject", "fail", "crash"] = "succeed"
    pace_ms: int = Field(default=0, ge=0, le=1000)  # a pause per step, so a test can watch it run


class CountOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: int = Field(default=1, ge=1)


def count(job: JobRun) -> dict[str, Any]:
    """Counts, reporting each step with details; ends as the input says."""
    request: CountInput = job.input
    step = job.options.step
    for done in range(step, request.to + 1, step):
        job.update(current=done, total=request.to, stage="counting", details={"last": done})
        time.sleep(request.pace_ms / 1000)
    if request.then == "reject":
        raise BadInput("The count was refused, as asked.")
    if request.then == "fail":
        raise JobFailed("The count could not finish, as asked.")
    if request.then == "crash":
        raise RuntimeError("/secret/path/in/a/traceback")
    return {"counted": request.to, "owner": job.owner}


def nothing(job: JobRun) -> None:
    """A kind without input or options: succeeds with an empty result."""


KINDS = [
    Kind(
        name="sample_count",
        queue="sample",
        input=JsonInput(CountInput),
        options=CountOptions,
        handler="tests.kindsample:count",
        result="{'counted': to, 'owner': the owner}",
        description="Counts to a number.",
    ),
    Kind(name="sample_nothing", queue="sample", handler="tests.kindsample:nothing"),
]
