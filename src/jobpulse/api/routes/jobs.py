"""``/jobs/``: submit, list, read, cancel, review, and read the imported rows. Progress is Redis-only."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from starlette.responses import Response

from jobpulse.api.deps import Owner, Services, ServicesDep
from jobpulse.api.lifecycle import cancel, progress_of, queue_job, remove, retry
from jobpulse.api.limits import in_words, read_body
from jobpulse.api.progress import JOB_KINDS
from jobpulse.api.ratelimit import SubmittingOwner
from jobpulse.api.records import job_record, links
from jobpulse.api.responses import json_response
from jobpulse.api.uploads import FormLimits, receive_upload
from jobpulse.db.models import Job
from jobpulse.db.repository import NewJob, utcnow
from jobpulse.errors import (
    Conflict,
    InvalidOptions,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from jobpulse.ids import is_job_id, new_job_id
from jobpulse.ocr.options import parse_ocr_options
from jobpulse.ocr.result import ReviewRequest, reviewed_result
from jobpulse.options import parse_json_options
from jobpulse.progress.record import ProgressUpdate
from jobpulse.settings import Settings
from jobpulse.spreadsheet.options import parse_options
from jobpulse.states import JobKind, State

__all__ = ["router"]

router = APIRouter(prefix="/jobs", tags=["jobs"])

_MAX_ROW_NUMBER = 2**31 - 1  # rows.row_number is a 32-bit INTEGER

# What each kind accepted here takes as options: (raw JSON or None, settings) -> validated model.
_OPTION_PARSERS: dict[JobKind, Callable[[str | None, Settings], BaseModel]] = {
    JobKind.SPREADSHEET_IMPORT: lambda raw, _settings: parse_options(raw),
    JobKind.AI_INFERENCE: lambda raw, settings: parse_ocr_options(raw, settings.ocr_min_confidence),
}


def _max_upload_bytes(settings: Settings, kind: JobKind) -> int:
    """The size limit of an upload of ``kind``."""
    return settings.ocr_max_upload_bytes if kind is JobKind.AI_INFERENCE else settings.max_upload_bytes


@router.post(
    "/",
    status_code=202,
    summary="Submit a job (multipart: kind, file, optional options JSON)",
    # The form is streamed by the handler (receive_upload), so it is declared here for OpenAPI.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["kind", "file"],
                        "properties": {
                            "kind": {"type": "string", "enum": [kind.value for kind in _OPTION_PARSERS]},
                            "file": {"type": "string", "format": "binary"},
                            "options": {"type": "string", "description": "the kind's options, as JSON"},
                        },
                    }
                }
            },
        }
    },
)
async def submit_job(request: Request, services: ServicesDep, owner: SubmittingOwner) -> Response:
    settings = services.settings
    job_id = new_job_id()
    folder = settings.upload_dir / job_id
    declared = request.headers.get("content-length", "")
    form = FormLimits.from_settings(settings)

    def check_fields(fields: dict[str, str]) -> int | None:
        """A form that names its kind before its file is refused before the file is streamed (a kind
        that is not accepted, a declared length plainly over the kind's limit), and streamed under the
        kind's own limit."""
        if "kind" not in fields:
            return None
        limit = _max_upload_bytes(settings, _job_kind(fields))
        if declared.isascii() and declared.isdigit() and int(declared) > limit + form.max_bytes:
            raise PayloadTooLarge(f"The file is larger than the limit of {in_words(limit)}.")
        return limit

    upload = await receive_upload(
        request,
        folder,
        # The larger of the kinds' limits while streaming (the kind may follow the file); the kind's own
        # limit is checked below once the kind is known.
        max_file_bytes=max(settings.max_upload_bytes, settings.ocr_max_upload_bytes),
        limits=form,
        check_fields=check_fields,
    )
    try:
        kind = _job_kind(upload.fields)
        if upload.file is None:
            raise InvalidRequest("The form has no file; send it in the field 'file'.", code="missing_file")
        if upload.file.size_bytes == 0:
            raise InvalidRequest("The uploaded file is empty.", code="empty_file")
        limit = _max_upload_bytes(settings, kind)
        if upload.file.size_bytes > limit:
            raise PayloadTooLarge(f"The file is larger than the limit of {in_words(limit)}.")
        parsed = _OPTION_PARSERS[kind](upload.fields.get("options"), settings)
        new = NewJob(
            id=job_id,
            kind=kind.value,
            owner=owner,
            options=parsed.model_dump(mode="json", exclude_none=True),
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
        where = " (videos go to POST /media/videos/)" if kind is JobKind.VIDEO else ""
        raise InvalidOptions(
            f"Jobs of kind {kind.value!r} are not accepted here{where}; expected one of: {accepted}.",
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
    # Normally answered by ProgressLayer before FastAPI; the same endpoint object answers either way.
    services: Services = request.app.state.services
    return await services.progress.response(request, job_id, JOB_KINDS)


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
    rows = services.jobs.rows(job.id, after=_row_cursor(cursor), limit=limit + 1)
    next_cursor = str(rows[limit - 1].row_number) if len(rows) > limit else None
    items = [{"row_number": row.row_number, "data": row.data} for row in rows[:limit]]
    return json_response({"items": items, "next_cursor": next_cursor})


@router.post("/{job_id}/cancel/", status_code=202, summary="Cancel a job; 409 if it already ended")
async def cancel_job(job_id: str, services: ServicesDep, owner: Owner) -> Response:
    job = await run_in_threadpool(_own_job, services, owner, job_id)
    return json_response(await cancel(services, job, JobKind(job.kind)), 202)


@router.post(
    "/{job_id}/review/",
    summary="Resolve a REVIEW_REQUIRED job: approve (SUCCESS) or reject (REJECTED_BAD_INPUT)",
    # The body is read by the handler (bounded, after the token), so it is declared here for OpenAPI.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ReviewRequest.model_json_schema()}},
        }
    },
)
async def review_job(job_id: str, request: Request, services: ServicesDep, owner: Owner) -> Response:
    """Answers 200 with the updated DB record (its ``result.review`` holds the decision and any corrected
    text, beside the model's ``result.text``); 409 when the job is not REVIEW_REQUIRED."""
    review = _review_request(await read_body(request, services.settings.max_json_body_bytes))
    job = await run_in_threadpool(_own_job, services, owner, job_id)
    if job.state != State.REVIEW_REQUIRED.value:
        raise Conflict(
            f"Only a job in REVIEW_REQUIRED can be reviewed; this one is {job.state}.",
            code="not_under_review",
        )
    result = reviewed_result(job.result, review, utcnow())
    done = await run_in_threadpool(
        services.jobs.review,
        job.id,
        owner=owner,
        state=review.state,
        result=result,
        error_reason=review.error_reason,
    )
    if not done:  # another review (or nothing else: a review is the only way out) won the race
        raise Conflict("The job was reviewed already.", code="not_under_review")
    # The DB first, then Redis: a client that sees the new progress state finds it in the record too.
    last: dict[str, Any] = {}
    try:
        last = await progress_of(services, job.id) or {}
        update = ProgressUpdate(
            review.state,
            percent=100.0,
            current=last.get("current"),
            total=last.get("total"),
            message="Approved on review" if review.decision == "approve" else "Rejected on review",
            error_reason=review.error_reason,
        )
        await services.store.write(job.id, update, owner=owner, kind=job.kind)
    except ServiceUnavailable:
        # The DB has the decision, and the answer is the DB record. The progress record keeps saying
        # REVIEW_REQUIRED (terminal: pollers stopped there) until it expires.
        pass
    reviewed = await run_in_threadpool(_own_job, services, owner, job.id)
    return json_response(job_record(reviewed))


def _row_cursor(cursor: str | None) -> int:
    """The row number a rows cursor names (0 for none): ASCII digits within the column's range, else 400."""
    if cursor is None:
        return 0
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 10 and int(cursor) <= _MAX_ROW_NUMBER):
        raise InvalidRequest("The cursor is not valid.", code="invalid_cursor")
    return int(cursor)


def _review_request(raw: bytes) -> ReviewRequest:
    """The review body: 400 when it is not JSON, 422 when its fields are wrong."""
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            'Send the review as JSON: {"decision": "approve" | "reject", "text": "optional correction"}.',
            code="invalid_json",
        ) from None
    return parse_json_options(ReviewRequest, raw.decode("utf-8", "replace"), "review")


@router.delete(
    "/{job_id}/",
    status_code=204,
    summary="Delete a job: its record, imported rows, files and progress (a running job is cancelled first)",
)
async def delete_job(job_id: str, services: ServicesDep, owner: Owner) -> Response:
    """Answers 204; afterwards the id is unknown (404 on the record, UNKNOWN on progress)."""
    job = await run_in_threadpool(_own_job, services, owner, job_id)
    await remove(services, job, JobKind(job.kind))
    return Response(status_code=204)


@router.post(
    "/{job_id}/retry/",
    status_code=202,
    summary="Run a FAILED job again as a new job (same input and options); 409 in any other state",
)
async def retry_job(job_id: str, services: ServicesDep, owner: SubmittingOwner) -> Response:
    """Answers 202 with the new job's progress body and links; its record's ``retry_of`` names this job."""
    job = await run_in_threadpool(_own_job, services, owner, job_id)
    body = await retry(services, job, JobKind(job.kind))
    body["links"] = links("/jobs", body["id"])
    return json_response(body, 202, {"location": body["links"]["self"]})
