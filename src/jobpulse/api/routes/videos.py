"""``/media/videos/``: upload, list, read, cancel, and download renditions. Progress is Redis-only."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import FileResponse, Response

from jobpulse.api.deps import Owner, Services, ServicesDep, file_holder
from jobpulse.api.lifecycle import cancel, queue_job, remove, retry
from jobpulse.api.ratelimit import SubmittingOwner
from jobpulse.api.records import links, video_record
from jobpulse.api.responses import json_response
from jobpulse.api.uploads import FormLimits, receive_upload
from jobpulse.auth import url_signature
from jobpulse.db.models import Video
from jobpulse.db.repository import NewJob
from jobpulse.errors import InvalidOptions, InvalidRequest, NotFound
from jobpulse.ids import is_job_id, new_job_id
from jobpulse.kinds import Kind, Upload
from jobpulse.media.files import media_folder
from jobpulse.states import State

__all__ = ["router"]

BASE = "/media/videos"
router = APIRouter(prefix=BASE, tags=["videos"])

_CONTENT_TYPES = {".mp4": "video/mp4", ".jpg": "image/jpeg"}


@router.post(
    "/",
    status_code=202,
    summary="Upload a video (multipart: file, optional options JSON)",
    # The form is streamed by the handler (receive_upload), so it is declared here for OpenAPI.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "options": {"type": "string", "description": "the video's options, as JSON"},
                        },
                    }
                }
            },
        }
    },
)
async def upload_video(request: Request, services: ServicesDep, owner: SubmittingOwner) -> Response:
    settings = services.settings
    kind = _video_kind(services)
    video_id = new_job_id()
    folder = settings.upload_dir / video_id
    upload = await receive_upload(
        request,
        folder,
        max_file_bytes=kind.input.limit(settings) if isinstance(kind.input, Upload) else 0,
        limits=FormLimits.from_settings(settings),
        # Options sent before the file are checked before the file is streamed.
        check_fields=lambda fields: kind.parse_options(fields.get("options"), settings),
    )
    try:
        if upload.file is None:
            raise InvalidRequest("The form has no file; send it in the field 'file'.", code="missing_file")
        if upload.file.size_bytes == 0:
            raise InvalidRequest("The uploaded file is empty.", code="empty_file")
        options = kind.parse_options(upload.fields.get("options"), settings)
        new = NewJob(
            id=video_id,
            kind=kind.name,
            owner=owner,
            options=options,
            input_filename=upload.file.filename,
            input_size_bytes=upload.file.size_bytes,
            input_content_type=upload.file.content_type,
        )
        body = await queue_job(services, new, kind)
    except BaseException:  # a refused or failed upload leaves nothing on disk
        shutil.rmtree(folder, ignore_errors=True)
        raise
    body["links"] = links(BASE, video_id)
    return json_response(body, 202, {"location": body["links"]["self"]})


def _video_kind(services: Services) -> Kind:
    """The kind served on ``/media/videos/`` (422 if this deployment has none)."""
    names = services.kinds.names("videos")
    if not names:
        raise InvalidOptions("This deployment does not process videos.", code="invalid_kind")
    kind = services.kinds.get(names[0])
    assert kind is not None
    return kind


def _own_video(services: Services, owner: str, video_id: str) -> Video:
    """The caller's video; 404 for anything else (missing, another owner's, a job's id)."""
    video_id = video_id.lower()
    video = services.videos.get(video_id, owner=owner) if is_job_id(video_id) else None
    if video is None:
        raise NotFound("No such video.")
    return video


def _linker(services: Services, video_id: str) -> Callable[[str], str]:
    settings = services.settings
    # Rounded to the hour, so the links (and the browser's cache of the files) stay the same for a while.
    expires = (int(time.time()) // 3600 + 1) * 3600 + settings.video_link_ttl_seconds
    secret = settings.require_secret_key()

    def link(name: str) -> str:
        path = f"{BASE}/{video_id}/files/{name}"
        return f"{path}?expires={expires}&signature={url_signature(secret, path, expires)}"

    return link


@router.get("/", summary="The caller's videos, newest first")
def list_videos(
    services: ServicesDep,
    owner: Owner,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> Response:
    videos, next_cursor = services.videos.list_owned(owner, limit=limit, cursor=cursor)
    items = [video_record(video, _linker(services, video.id)) for video in videos]
    return json_response({"items": items, "next_cursor": next_cursor})


@router.get("/{video_id}/", summary="The video's DB record, with download links once it is READY")
def get_video(video_id: str, services: ServicesDep, owner: Owner) -> Response:
    video = _own_video(services, owner, video_id)
    return json_response(video_record(video, _linker(services, video.id)))


@router.get(
    "/{video_id}/progress/",
    summary="Live progress, from Redis only (no SQL); UNKNOWN when there is no record",
)
async def get_progress(
    video_id: str,
    request: Request,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    # Normally answered by ProgressLayer before FastAPI (as for jobs); the same endpoint answers here.
    services: Services = request.app.state.services
    return await services.progress.response(request, video_id, videos=True)


@router.post("/{video_id}/cancel/", status_code=202, summary="Cancel a video; 409 if it already ended")
async def cancel_video(video_id: str, services: ServicesDep, owner: Owner) -> Response:
    video = await run_in_threadpool(_own_video, services, owner, video_id)
    return json_response(await cancel(services, video, services.kind_of(video)), 202)


@router.head("/{video_id}/files/{name}", include_in_schema=False)
@router.get(
    "/{video_id}/files/{name}",
    summary="A rendition or the thumbnail of a READY video, with HTTP Range (bearer token or signed link)",
)
def get_file(
    video_id: str,
    name: str,
    request: Request,
    services: ServicesDep,
    expires: str | None = None,
    signature: str | None = None,
) -> Response:
    video_id = video_id.lower()
    path = f"{BASE}/{video_id}/files/{name}"
    video = file_holder(services, services.videos, path, video_id, request, expires, signature)
    if video is None or video.state != State.READY.value:
        raise NotFound("No such video, or it is not ready.")
    files = {rendition["file"] for rendition in video.renditions or []} | {video.thumbnail}
    if name not in files:
        raise NotFound("The video has no such file.", code="no_such_file")
    file = media_folder(services.settings, video.id) / name
    if not file.is_file():
        raise NotFound("The file is no longer available.", code="no_such_file")
    return FileResponse(
        file,
        media_type=_CONTENT_TYPES.get(file.suffix, "application/octet-stream"),
        headers={"cache-control": "private, max-age=3600"},
    )


@router.delete(
    "/{video_id}/",
    status_code=204,
    summary="Delete a video: its record, upload, renditions and progress (a running one is cancelled first)",
)
async def delete_video(video_id: str, services: ServicesDep, owner: Owner) -> Response:
    """Answers 204; afterwards the id is unknown (404 on the record, UNKNOWN on progress)."""
    video = await run_in_threadpool(_own_video, services, owner, video_id)
    await remove(services, video, services.kind_of(video))
    return Response(status_code=204)


@router.post(
    "/{video_id}/retry/",
    status_code=202,
    summary="Process a FAILED video again as a new one (same upload and options); 409 in any other state",
)
async def retry_video(video_id: str, services: ServicesDep, owner: SubmittingOwner) -> Response:
    """Answers 202 with the new video's progress body and links; its record's ``retry_of`` names this one."""
    video = await run_in_threadpool(_own_video, services, owner, video_id)
    body = await retry(services, video, services.kind_of(video))
    body["links"] = links(BASE, body["id"])
    return json_response(body, 202, {"location": body["links"]["self"]})
