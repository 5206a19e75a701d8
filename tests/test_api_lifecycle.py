"""``DELETE /jobs/{id}/``, ``DELETE /media/videos/{id}/`` and ``POST .../retry/`` against the real API
server, a real Celery worker, Redis and the database."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from jobpulse.auth import mint_token
from jobpulse.db.engine import create_db_engine
from jobpulse.db.repository import JobRepository, VideoRepository
from jobpulse.keys import Keyspace
from jobpulse.progress.layout import DELETED_MARKER
from jobpulse.settings import Settings
from jobpulse.states import State
from tests.conftest import SECRET, app_client
from tests.jobs import CSV, apoll_until, poll_until_terminal, submit_csv, submit_file, wait_for
from tests.services import RedisServer, Worker

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]

VIDEOS = "/media/videos"


def big_csv(rows: int) -> bytes:
    return b"id,name\n" + b"".join(b"%d,person %d\n" % (n, n) for n in range(rows))


@pytest.fixture
def repositories(settings: Settings) -> Iterator[tuple[JobRepository, VideoRepository]]:
    engine = create_db_engine(settings.resolved_database_url)
    yield JobRepository(engine), VideoRepository(engine)
    engine.dispose()


@pytest.fixture
def jobs(repositories: tuple[JobRepository, VideoRepository]) -> JobRepository:
    return repositories[0]


def assert_gone(http: httpx.Client, auth: dict[str, str], job_id: str, base: str = "/jobs") -> None:
    record = http.get(f"{base}/{job_id}/", headers=auth)
    assert record.status_code == 404 and record.json()["error"]["code"] == "not_found"
    assert http.get(f"{base}/{job_id}/progress/", headers=auth).json()["state"] == "UNKNOWN"
    assert http.post("/progress/batch/", headers=auth, json={"ids": [job_id]}).json()["items"][job_id][
        "state"
    ] == ("UNKNOWN")
    again = http.delete(f"{base}/{job_id}/", headers=auth)
    assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"


def test_delete_a_finished_import_removes_record_rows_and_progress(
    http: httpx.Client, auth: dict[str, str], jobs: JobRepository
) -> None:
    job_id = submit_file(http, auth, CSV, "people.csv").json()["id"]
    assert poll_until_terminal(http, auth, job_id)[-1]["state"] == "SUCCESS"
    assert jobs.count_rows([job_id]) == 2
    response = http.delete(f"/jobs/{job_id}/", headers=auth)
    assert response.status_code == 204 and response.content == b""
    assert_gone(http, auth, job_id)
    assert http.get(f"/jobs/{job_id}/rows/", headers=auth).status_code == 404
    assert jobs.count_rows([job_id]) == 0 and jobs.get(job_id) is None


def test_delete_of_another_owners_job_is_404_and_keeps_it(
    http: httpx.Client, auth: dict[str, str], jobs: JobRepository
) -> None:
    job_id = submit_file(http, auth, CSV, "people.csv").json()["id"]
    assert poll_until_terminal(http, auth, job_id)[-1]["state"] == "SUCCESS"
    stranger = {"Authorization": f"Bearer {mint_token(SECRET, 'mallory', 60)}"}
    for url in (f"/jobs/{job_id}/", f"{VIDEOS}/{job_id}/", "/jobs/not-an-id/", f"/jobs/{uuid.uuid4()}/"):
        response = http.delete(url, headers=stranger)
        assert response.status_code == 404, url
        assert response.json()["error"]["code"] == "not_found"
    assert http.delete(f"{VIDEOS}/{job_id}/", headers=auth).status_code == 404  # a job id on video routes
    assert http.get(f"/jobs/{job_id}/", headers=auth).json()["state"] == "SUCCESS"
    assert jobs.count_rows([job_id]) == 2


def test_delete_of_a_running_import_stops_the_worker_and_leaves_nothing(
    http: httpx.Client,
    auth: dict[str, str],
    jobs: JobRepository,
    settings: Settings,
    redis_client: redis.Redis,
) -> None:
    """The worker is mid-import (batches being written) when its job is deleted: it stops at its next
    report, its batch writer's last inserts are discarded, and the progress record never comes back."""
    job_id = submit_file(http, auth, big_csv(300_000), "big.csv").json()["id"]
    wait_for(lambda: jobs.count_rows([job_id]) > 0, "the first imported rows")
    assert http.get(f"/jobs/{job_id}/progress/", headers=auth).json()["state"] == "RUNNING"
    keys = Keyspace.from_settings(settings)
    assert redis_client.exists(keys.lock(job_id)), "a worker should hold the job"

    response = http.delete(f"/jobs/{job_id}/", headers=auth)
    assert response.status_code == 204
    assert http.get(f"/jobs/{job_id}/progress/", headers=auth).json()["state"] == "UNKNOWN"
    assert not (settings.upload_dir / job_id).exists()

    def worker_let_go() -> bool:
        # Every poll meanwhile must say UNKNOWN: a worker still reporting must not revive the record.
        assert http.get(f"/jobs/{job_id}/progress/", headers=auth).json()["state"] == "UNKNOWN"
        return not redis_client.exists(keys.lock(job_id))

    wait_for(worker_let_go, "the worker to drop the deleted job")
    assert jobs.count_rows([job_id]) == 0
    assert jobs.get(job_id) is None
    assert not (settings.upload_dir / job_id).exists()
    assert redis_client.get(keys.progress(job_id)) == DELETED_MARKER  # names no owner
    assert_gone(http, auth, job_id)


def make_video(path: Path) -> Path:
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"]
    command += ["-i", "testsrc=size=320x240:rate=25:duration=1", "-c:v", "libx264", "-preset", "ultrafast"]
    subprocess.run([*command, "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def test_delete_a_ready_video_removes_its_renditions(
    http: httpx.Client, auth: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    clip = make_video(tmp_path / "clip.mp4").read_bytes()
    files = {"file": ("clip.mp4", clip, "video/mp4")}
    video_id = http.post(f"{VIDEOS}/", headers=auth, files=files).json()["id"]
    assert poll_until_terminal(http, auth, video_id, base=VIDEOS)[-1]["state"] == "READY"
    media = settings.media_dir / video_id
    assert any(media.glob("*.mp4"))
    stranger = {"Authorization": f"Bearer {mint_token(SECRET, 'mallory', 60)}"}
    assert http.delete(f"{VIDEOS}/{video_id}/", headers=stranger).status_code == 404
    assert http.delete(f"/jobs/{video_id}/", headers=auth).status_code == 404  # a video id on job routes
    assert media.exists()

    assert http.delete(f"{VIDEOS}/{video_id}/", headers=auth).status_code == 204
    assert not media.exists() and not (settings.upload_dir / video_id).exists()
    assert_gone(http, auth, video_id, base=VIDEOS)


async def queued_then_failed(
    idle_client: httpx.AsyncClient, auth: dict[str, str], jobs: JobRepository, content: bytes = CSV
) -> str:
    """A job that no worker took (its broker is a Redis of its own), then FAILED as a worker records it."""
    job_id: str = (await submit_csv(idle_client, auth, content)).json()["id"]
    assert jobs.finish(job_id, State.FAILED, error_reason="An internal error stopped the job.")
    return job_id


async def test_retry_of_a_failed_job_runs_a_new_job_with_the_same_input(
    idle_client: httpx.AsyncClient,
    http: httpx.Client,
    auth: dict[str, str],
    jobs: JobRepository,
    settings: Settings,
) -> None:
    failed = await queued_then_failed(idle_client, auth, jobs)
    assert http.get(f"/jobs/{failed}/", headers=auth).json()["retry_of"] is None
    response = http.post(f"/jobs/{failed}/retry/", headers=auth)  # the API whose broker has a worker
    assert response.status_code == 202, response.text
    body = response.json()
    new_id = body["id"]
    assert new_id != failed and body["state"] == "PENDING" and body["kind"] == "spreadsheet_import"
    assert body["links"]["self"] == f"/jobs/{new_id}/" and response.headers["location"] == f"/jobs/{new_id}/"
    assert poll_until_terminal(http, auth, new_id)[-1]["state"] == "SUCCESS"
    record = http.get(f"/jobs/{new_id}/", headers=auth).json()
    assert record["retry_of"] == failed and record["input"]["filename"] == "people.csv"
    assert record["result"]["rows_imported"] == 2
    original = http.get(f"/jobs/{failed}/", headers=auth).json()
    assert original["state"] == "FAILED" and original["retry_of"] is None
    assert list((settings.upload_dir / failed).glob("input*")), "the FAILED job keeps its input"
    assert not (settings.upload_dir / new_id).exists(), "the retry's own copy goes once it succeeded"

    stranger = {"Authorization": f"Bearer {mint_token(SECRET, 'mallory', 60)}"}
    assert http.post(f"/jobs/{failed}/retry/", headers=stranger).status_code == 404
    done = http.post(f"/jobs/{new_id}/retry/", headers=auth)
    assert done.status_code == 409 and done.json()["error"]["code"] == "not_failed"
    assert "SUCCESS" in done.json()["error"]["message"]

    assert http.delete(f"/jobs/{failed}/", headers=auth).status_code == 204
    assert not (settings.upload_dir / failed).exists()
    assert http.get(f"/jobs/{new_id}/", headers=auth).json()["retry_of"] == failed  # a name, not a link


async def test_retry_needs_a_failed_job_whose_input_is_kept(
    idle_client: httpx.AsyncClient, auth: dict[str, str], jobs: JobRepository, settings: Settings
) -> None:
    pending = (await submit_csv(idle_client, auth)).json()["id"]
    response = await idle_client.post(f"/jobs/{pending}/retry/", headers=auth)
    assert response.status_code == 409 and response.json()["error"]["code"] == "not_failed"

    failed = await queued_then_failed(idle_client, auth, jobs)
    for path in (settings.upload_dir / failed).glob("input*"):
        path.unlink()
    response = await idle_client.post(f"/jobs/{failed}/retry/", headers=auth)
    assert response.status_code == 409 and response.json()["error"]["code"] == "input_gone"
    message = response.json()["error"]["message"]
    assert "submit it again" in message and str(settings.data_dir) not in message
    listed = (await idle_client.get("/jobs/", headers=auth, params={"limit": 10})).json()["items"]
    assert {item["id"] for item in listed} == {pending, failed}  # no half-made retry


async def test_delete_of_a_queued_job_then_its_message_is_dropped(
    idle_client: httpx.AsyncClient, auth: dict[str, str], jobs: JobRepository, settings: Settings
) -> None:
    job_id = (await submit_csv(idle_client, auth)).json()["id"]
    assert (settings.upload_dir / job_id).exists()
    assert (await idle_client.delete(f"/jobs/{job_id}/", headers=auth)).status_code == 204
    assert jobs.get(job_id) is None and not (settings.upload_dir / job_id).exists()
    progress = (await idle_client.get(f"/jobs/{job_id}/progress/", headers=auth)).json()
    assert progress["state"] == "UNKNOWN"
    assert (await idle_client.get(f"/jobs/{job_id}/", headers=auth)).status_code == 404


async def test_retry_of_a_failed_video(
    idle_client: httpx.AsyncClient,
    auth: dict[str, str],
    repositories: tuple[JobRepository, VideoRepository],
    settings: Settings,
) -> None:
    files = {"file": ("clip.mp4", b"not really a video, never probed here", "video/mp4")}
    video_id = (await idle_client.post(f"{VIDEOS}/", headers=auth, files=files)).json()["id"]
    assert repositories[1].finish(video_id, State.FAILED, error_reason="ffmpeg stopped.")
    response = await idle_client.post(f"{VIDEOS}/{video_id}/retry/", headers=auth)
    assert response.status_code == 202, response.text
    new_id = response.json()["id"]
    assert response.json()["links"]["self"] == f"{VIDEOS}/{new_id}/"
    record = (await idle_client.get(f"{VIDEOS}/{new_id}/", headers=auth)).json()
    assert record["retry_of"] == video_id and record["state"] == "PENDING"
    copy = next((settings.upload_dir / new_id).glob("input*"))
    assert copy.read_bytes() == files["file"][1]
    assert (await idle_client.post(f"/jobs/{video_id}/retry/", headers=auth)).status_code == 404


async def test_a_job_the_worker_fails_keeps_its_upload_for_a_retry(
    base_env: dict[str, str],
    own_redis: RedisServer,
    settings: Settings,
    auth: dict[str, str],
    tmp_path: Path,
) -> None:
    """A real FAILED end (the job passes its time limit): the upload stays, so the retry has an input;
    the retry's own upload goes once it ends in any other way."""
    env = dict(base_env, REDIS_URL=own_redis.url, JOBPULSE_JOB_TIME_LIMIT_SECONDS="1")
    worker = Worker(env, tmp_path / "worker.log", concurrency=1)
    worker.start()
    try:
        async with app_client(settings.model_copy(update={"redis_url": own_redis.url})) as client:
            job_id = (await submit_csv(client, auth, big_csv(600_000), "big.csv")).json()["id"]
            failed = await apoll_until(client, auth, job_id, {"FAILED", "SUCCESS", "REJECTED_BAD_INPUT"})
            assert failed["state"] == "FAILED", failed
            assert list((settings.upload_dir / job_id).glob("input*")), "the FAILED job's upload is kept"
            retried = await client.post(f"/jobs/{job_id}/retry/", headers=auth)
            assert retried.status_code == 202, retried.text
            new_id = retried.json()["id"]
            cancelled = await client.post(f"/jobs/{new_id}/cancel/", headers=auth)
            assert cancelled.status_code == 202
            await apoll_until(client, auth, new_id, {"FAILED", "CANCELLED"})
            wait_for(
                lambda: not (settings.upload_dir / new_id).exists(), "the cancelled retry's upload to go"
            )
            assert list((settings.upload_dir / job_id).glob("input*"))
    finally:
        worker.stop()
