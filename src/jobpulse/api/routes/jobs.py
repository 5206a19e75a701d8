"""``/jobs/``: submit, list, read, cancel, and read the imported rows. Progress is Redis-only."""

from __future__ import annotations

import shutil
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from jobpulse.api.deps import Owner, Services, ServicesDep
from jobpulse.api.lifecycle import cancel, queue_job
from jobpulse.api.progress import JOB_KINDS
from jobpulse.api.records import job_record, links
from jobpulse.api.responses import json_response
from jobpulse.api.uploads import receive_upload
from jobpulse.db.models import Job
from jobpulse.db.repository import NewJob
from jobpulse.errors import InvalidOptions, InvalidRequest, NotFound
from jobpulse.ids import is_job_id, new_job_id
from jobpulse.spreadsheet.options import parse_options
from jobpulse.states import JobKind

__all__ = ["router"]

router = APIRouter(prefix="/jobs", tags=["jobs"])

_OPTION_PARSERS = {JobKind.SPREADSHEET_IMPORT: parse_options}


@router.post("/", status_code=202, summary="Submit a job (multipart: kind, file, optional options JSON)")
async def submit_job(request: Request, services: ServicesDep, owner: Owner) -> Response:
    job_id = new_job_id()
    folder = services.settings.upload_dir / job_id
    upload = await receive_upload(
        request,
        folder,
        max_file_bytes=services.settings.max_upload_bytes,
        # A form that names its kind before its file is refused before the file is streamed.
        check_fields=lambda fields: _job_kind(fields) if "kind" in fields else None,
    )
    try:
        kind = _job_kind(upload.fields)
        parser = _OPTION_PARSERS[kind]
        if upload.file is None:
            raise InvalidRequest("The form has no file; send it in the field 'file'.", code="missing_file")
        if upload.file.size_bytes == 0:
            raise InvalidRequest("The uploaded file is empty.", code="empty_file")
        options = parser(upload.fields.get("options")).model_dump(mode="json", exclude_none=True)
        new = NewJob(
            id=job_id,
            kind=kind.value,
            owner=owner,
            options=options,
            input_filename=upload.file.filename,
            input_size_bytes=upload.file.size_bytes,
            input_content_type=upload.file.content_type,
        )
        body = await queue_job(services, new, kind)
    except BaseException:  # a refused or failed submission leaves nothing on disk
        shutil.rmtree(folder, ignore_errors=True)
        raise
    body["links"] = links("/jobs", job_id)
    return json_response(body, 202, {"location": body["links"]["self"]})


def _job_kind(fields: dict[str, str]) -> JobKind:
    """The form's ``kind``, if jobs of that kind are accepted on this route; else 422."""
    name = fields.get("kind", "").strip()
    accepted = ", ".join(kind.value for kind in _OPTION_PARSERS)
    try:
        kind = JobKind(name)
    except ValueError:
        raise InvalidOptions(
            f"Unknown job kind {name!r}; expected one of: {accepted}.", code="invalid_kind"
        ) from None
    if kind not in _OPTION_PARSERS:
        raise InvalidOptions(
            f"Jobs of kind {kind.value!r} are not accepted yet; expected one of: {accepted}.",
            code="invalid_kind",
        )
    return kind


@router.get("/", summary="The caller's jobs, newest first")
def list_jobs(
    services: ServicesDep,
    owner: Owner,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> Response:
    kinds = [JobKind.SPREADSHEET_IMPORT.value, JobKind.AI_INFERENCE.value]
    jobs, next_cursor = services.jobs.list_owned(owner, limit=limit, cursor=cursor, kinds=kinds)
    return json_response({"items": [job_record(job) for job in jobs], "next_cursor": next_cursor})


def _own_job(services: Services, owner: str, job_id: str) -> Job:
    """The caller's job of a kind this router serves; 404 for anything else (missing, foreign, a video)."""
    job_id = job_id.lower()
    job = services.jobs.get(job_id, owner=owner) if is_job_id(job_id) else None
    if job is None or job.kind.encode() not in JOB_KINDS:
        raise NotFound("No such job.")
    return job


@router.get("/{job_id}/", summary="The job's DB record")
def get_job(job_id: str, services: ServicesDep, owner: Owner) -> Response:
    return json_response(job_record(_own_job(services, owner, job_id)))


@router.get(
    "/{job_id}/progress/",
    summary="Live progress, from Redis only (no SQL); UNKNOWN when there is no record",
)
async def get_progress(
    job_id: str,
    request: Request,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    # Normally answered by ProgressLayer before FastAPI; this route documents it and serves it if the
    # layer is not in front (the same endpoint object answers either way).
    services: Services = request.app.state.services
    reply = await services.progress.reply(
        job_id.lower(),
        request.headers.get("authorization", "").encode() or None,
        if_none_match.encode() if if_none_match else None,
        JOB_KINDS,
    )
    return Response(reply.body, reply.status, headers={k.decode(): v.decode() for k, v in reply.headers})


@router.get("/{job_id}/rows/", summary="The rows a spreadsheet job imported, in file order")
def get_rows(
    job_id: str,
    services: ServicesDep,
    owner: Owner,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> Response:
    job = _own_job(services, owner, job_id)
    if job.kind != JobKind.SPREADSHEET_IMPORT.value:
        raise NotFound("Only spreadsheet imports have rows.")
    if cursor is not None and not cursor.isdigit():
        raise InvalidRequest("The cursor is not valid.", code="invalid_cursor")
    rows = services.jobs.rows(job.id, after=int(cursor or 0), limit=limit + 1)
    next_cursor = str(rows[limit - 1].row_number) if len(rows) > limit else None
    items = [{"row_number": row.row_number, "data": row.data} for row in rows[:limit]]
    return json_response({"items": items, "next_cursor": next_cursor})


@router.post("/{job_id}/cancel/", status_code=202, summary="Cancel a job; 409 if it already ended")
async def cancel_job(job_id: str, services: ServicesDep, owner: Owner) -> Response:
    job = await run_in_threadpool(_own_job, services, owner, job_id)
    return json_response(await cancel(services, job, JobKind(job.kind)), 202)
