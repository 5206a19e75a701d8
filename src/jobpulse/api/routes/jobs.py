"""``/jobs/``: submit a job of any kind whose resource is ``jobs``, list, read, cancel, delete, retry,
download its output files; review an OCR job and read a spreadsheet import's rows. Progress is
Redis-only."""

from __future__ import annotations

import shutil
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict
from starlette.responses import FileResponse, Response

from jobpulse.api.deps import Owner, Services, ServicesDep, file_holder
from jobpulse.api.lifecycle import cancel, progress_of, queue_job, remove, retry
from jobpulse.api.limits import in_words, read_body
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
from jobpulse.handler import FILE_NAME
from jobpulse.ids import is_job_id, new_job_id
from jobpulse.kinds import JsonInput, Kind, Upload
from jobpulse.ocr.result import ReviewRequest, reviewed_result
from jobpulse.options import parse_json_options
from jobpulse.progress.record import ProgressUpdate
from jobpulse.spreadsheet.kind import KIND as SPREADSHEET_KIND
from jobpulse.states import State

__all__ = ["router"]

router = APIRouter(prefix="/jobs", tags=["jobs"])

_MAX_ROW_NUMBER = 2**31 - 1  # rows.row_number is a 32-bit INTEGER


class JsonSubmission(BaseModel):
    """A job of a kind whose input is a JSON document (or that takes no input)."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    input: dict[str, Any] | None = None
    options: dict[str, Any] | None = None


_SUBMIT_BODIES = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["kind", "file"],
            "properties": {
                "kind": {"type": "string", "description": "a kind whose input is an upload (GET /kinds/)"},
                "file": {"type": "string", "format": "binary"},
                "options": {"type": "string", "description": "the kind's options, as JSON"},
            },
        }
    },
    "application/json": {"schema": JsonSubmission.model_json_schema()},
}


@router.post(
    "/",
    status_code=202,
    summary="Submit a job: multipart (kind, file, options) for upload kinds, JSON for the others",
    # The body is streamed or read bounded by the handler, so it is declared here for OpenAPI.
    openapi_extra={"requestBody": {"required": True, "content": _SUBMIT_BODIES}},
)
async def submit_job(request: Request, services: ServicesDep, owner: SubmittingOwner) -> Response:
    """Answers 202 with the new job's PENDING progress body and its links. The kinds and what each takes
    are listed by ``GET /kinds/``; an unknown kind, or one submitted on the wrong route, answers 422."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type == "application/json":
        body = await _submit_json(request, services, owner)
    else:
        body = await _submit_upload(request, services, owner)
    body["links"] = links("/jobs", body["id"])
    return json_response(body, 202, {"location": body["links"]["self"]})


async def _submit_json(request: Request, services: ServicesDep, owner: str) -> dict[str, Any]:
    raw = await read_body(request, services.settings.max_json_body_bytes)
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            'Send the job as JSON: {"kind": "...", "input": {...}, "options": {...}}.', code="invalid_json"
        ) from None
    submission = parse_json_options(JsonSubmission, raw.decode("utf-8", "replace"), "job", "submission")
    kind = services.submittable(submission.kind, "jobs")
    if isinstance(kind.input, Upload):
        raise InvalidOptions(
            f"Jobs of kind {kind.name!r} take a file: send them as multipart/form-data with the file in "
            "the field 'file'.",
            code="invalid_kind",
        )
    if kind.input is None and submission.input:
        raise InvalidOptions(f"Jobs of kind {kind.name!r} take no input.")
    data = kind.parse_input(submission.input or {}) if isinstance(kind.input, JsonInput) else None
    options = None if submission.options is None else orjson.dumps(submission.options).decode()
    new = NewJob(
        id=new_job_id(),
        kind=kind.name,
        owner=owner,
        options=kind.parse_options(options, services.settings),
        input_filename="",
        input_size_bytes=len(orjson.dumps(data)) if data is not None else 0,
        input_content_type="application/json" if data is not None else None,
        input_data=data,
    )
    return await queue_job(services, new, kind)


async def _submit_upload(request: Request, services: ServicesDep, owner: str) -> dict[str, Any]:
    settings = services.settings
    job_id = new_job_id()
    folder = settings.upload_dir / job_id
    declared = request.headers.get("content-length", "")
    form = FormLimits.from_settings(settings)

    def upload_kind(fields: dict[str, str]) -> Kind:
        kind = services.submittable(fields.get("kind", "").strip(), "jobs")
        if not isinstance(kind.input, Upload):
            raise InvalidOptions(
                f"Jobs of kind {kind.name!r} take no file: send them as JSON "
                '({"kind": ..., "input": {...}, "options": {...}}).',
                code="invalid_kind",
            )
        return kind

    def check_fields(fields: dict[str, str]) -> int | None:
        """A form that names its kind before its file is refused before the file is streamed (a kind
        that is not accepted, a declared length plainly over the kind's limit), and streamed under the
        kind's own limit."""
        if "kind" not in fields:
            return None
        kind = upload_kind(fields)
        assert isinstance(kind.input, Upload)
        limit = kind.input.limit(settings)
        if declared.isascii() and declared.isdigit() and int(declared) > limit + form.max_bytes:
            raise PayloadTooLarge(f"The file is larger than the limit of {in_words(limit)}.")
        return limit

    upload = await receive_upload(
        request,
        folder,
        # The largest of the kinds' limits while streaming (the kind may follow the file); the kind's own
        # limit is checked below once the kind is known.
        max_file_bytes=_largest_upload(services),
        limits=form,
        check_fields=check_fields,
    )
    try:
        kind = upload_kind(upload.fields)
        assert isinstance(kind.input, Upload)
        if upload.file is None:
            raise InvalidRequest("The form has no file; send it in the field 'file'.", code="missing_file")
        if upload.file.size_bytes == 0:
            raise InvalidRequest("The uploaded file is empty.", code="empty_file")
        limit = kind.input.limit(settings)
        if upload.file.size_bytes > limit:
            raise PayloadTooLarge(f"The file is larger than the limit of {in_words(limit)}.")
        new = NewJob(
            id=job_id,
            kind=kind.name,
            owner=owner,
            options=kind.parse_options(upload.fields.get("options"), settings),
            input_filename=upload.file.filename,
            input_size_bytes=upload.file.size_bytes,
            input_content_type=upload.file.content_type,
        )
        return await queue_job(services, new, kind)
    except BaseException:  # a refused or failed submission leaves nothing on disk
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _largest_upload(services: Services) -> int:
    """The largest file any upload kind of ``/jobs/`` takes."""
    limits = [
        kind.input.limit(services.settings)
        for kind in services.kinds
        if kind.resource == "jobs" and isinstance(kind.input, Upload)
    ]
    return max(limits, default=0)


@router.get("/", summary="The caller's jobs, newest first")
def list_jobs(
    services: ServicesDep,
    owner: Owner,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> Response:
    jobs, next_cursor = services.jobs.list_owned(owner, limit=limit, cursor=cursor)
    return json_response({"items": [job_record(job) for job in jobs], "next_cursor": next_cursor})


def _own_job(services: Services, owner: str, job_id: str) -> Job:
    """The caller's job (the jobs table holds every kind but videos); 404 for anything else (missing,
    another owner's, a video)."""
    job_id = job_id.lower()
    job = services.jobs.get(job_id, owner=owner) if is_job_id(job_id) else None
    if job is None:
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
    return await services.progress.response(request, job_id, videos=False)


@router.get("/{job_id}/rows/", summary="The rows a spreadsheet job imported, in file order")
def get_rows(
    job_id: str,
    services: ServicesDep,
    owner: Owner,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> Response:
    job = _own_job(services, owner, job_id)
    if job.kind != SPREADSHEET_KIND.name:
        raise NotFound("Only spreadsheet imports have rows.")
    rows = services.jobs.rows(job.id, after=_row_cursor(cursor), limit=limit + 1)
    next_cursor = str(rows[limit - 1].row_number) if len(rows) > limit else None
    items = [{"row_number": row.row_number, "data": row.data} for row in rows[:limit]]
    return json_response({"items": items, "next_cursor": next_cursor})


@router.post("/{job_id}/cancel/", status_code=202, summary="Cancel a job; 409 if it already ended")
async def cancel_job(job_id: str, services: ServicesDep, owner: Owner) -> Response:
    job = await run_in_threadpool(_own_job, services, owner, job_id)
    return json_response(await cancel(services, job, services.kind_of(job)), 202)


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
    await remove(services, job, services.kind_of(job))
    return Response(status_code=204)


@router.post(
    "/{job_id}/retry/",
    status_code=202,
    summary="Run a FAILED job again as a new job (same input and options); 409 in any other state",
)
async def retry_job(job_id: str, services: ServicesDep, owner: SubmittingOwner) -> Response:
    """Answers 202 with the new job's progress body and links; its record's ``retry_of`` names this job."""
    job = await run_in_threadpool(_own_job, services, owner, job_id)
    body = await retry(services, job, services.kind_of(job))
    body["links"] = links("/jobs", body["id"])
    return json_response(body, 202, {"location": body["links"]["self"]})


@router.head("/{job_id}/files/{name}", include_in_schema=False)
@router.get(
    "/{job_id}/files/{name}",
    summary="An output file of a SUCCESS job (bearer token, or the signed link its handler made)",
)
def get_file(
    job_id: str,
    name: str,
    request: Request,
    services: ServicesDep,
    expires: str | None = None,
    signature: str | None = None,
) -> Response:
    """The file ``name`` a job's handler wrote (``JobRun.output_path``), with HTTP Range. Answers 404
    unless the job is the caller's (or the link is signed for this path) and SUCCESS."""
    job_id = job_id.lower()
    path = f"/jobs/{job_id}/files/{name}"
    job = file_holder(services, services.jobs, path, job_id, request, expires, signature)
    if job is None or job.state != State.SUCCESS.value:
        raise NotFound("No such job, or it has not succeeded.")
    file = services.settings.media_dir / job.id / name
    if not FILE_NAME.fullmatch(name) or not file.is_file() or file.is_symlink():
        raise NotFound("The job has no such file.", code="no_such_file")
    return FileResponse(
        file,
        media_type=_media_type(name),
        filename=name,
        headers={"cache-control": "private, max-age=3600", "x-content-type-options": "nosniff"},
    )


_MEDIA_TYPES = {
    ".csv": "text/csv; charset=utf-8",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".json": "application/json",
    ".pdf": "application/pdf",
    ".zip": "application/zip",
}


def _media_type(name: str) -> str:
    """A download's type by its name; anything unknown is served as bytes (never rendered as a page)."""
    suffix = name[name.rfind(".") :].lower() if "." in name else ""
    return _MEDIA_TYPES.get(suffix, "application/octet-stream")
