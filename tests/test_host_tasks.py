"""Tasks of the host application: a backend's own Celery app (``tests.hostapp``) creates jobs through
:class:`~jobpulse.tracker.Tracker` (or over HTTP) and runs them in its own tracked task, under jobpulse's
lifecycle; the API serves their progress from Redis alone. Real Redis, database and Celery worker."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import redis

from jobpulse.api.app import create_app
from jobpulse.broker import create_celery, send_job
from jobpulse.embedded import free_port
from jobpulse.errors import InvalidOptions, PayloadTooLarge, ServiceUnavailable
from jobpulse.handler import HandOff, JobRun, Requeue
from jobpulse.keys import Keyspace
from jobpulse.kinds import Kind, KindRegistry
from jobpulse.progress import layout
from jobpulse.progress.lease import Lease
from jobpulse.settings import Settings
from jobpulse.states import State
from jobpulse.tracker import Tracker
from jobpulse.worker.task import FAILED_REASON
from tests.conftest import settings_from
from tests.hostapp import tasks as hostapp
from tests.hostapp.kinds import ReportRequest
from tests.services import RedisServer, Worker

pytestmark = pytest.mark.integration

BAD_INPUT_REASON = "The report needs at least one column; choose one and try again."
KIND_MODULES = "tests.hostapp.kinds"


@pytest.fixture(scope="module")
def host_env(base_env: dict[str, str]) -> dict[str, str]:
    """The environment the host application's processes share with jobpulse's."""
    return {**base_env, "JOBPULSE_KIND_MODULES": KIND_MODULES}


@pytest.fixture(scope="module")
def host_worker(host_env: dict[str, str], session_dir: Path) -> Iterator[Worker]:
    """The host application's own Celery worker, on its kind's queue."""
    command = [
        *(sys.executable, "-m", "celery", "-A", "tests.hostapp.tasks", "worker"),
        *("-Q", "hostapp-reports", "--concurrency", "1", "--pool", "prefork", "-n", "hostapp@%h"),
        *("--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "INFO"),
    ]
    process = Worker(host_env, session_dir / "hostapp-worker.log", command=command)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def host_process(host_env: dict[str, str]) -> Iterator[None]:
    """This process as the host's web process: its environment is jobpulse's (the host's module-level
    tracker and Celery app read it at first use)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("JOBPULSE_") or name in ("REDIS_URL", "DATABASE_URL"):
                patch.delenv(name)
        for name, value in host_env.items():
            if name.startswith("JOBPULSE_") or name in ("REDIS_URL", "DATABASE_URL"):
                patch.setenv(name, value)
        yield
        hostapp.tracker.close()
        hostapp.app.close()


@pytest.fixture
def host_settings(base_env: dict[str, str]) -> Settings:
    return settings_from(base_env, kind_modules=("tests.hostapp.kinds",))


@pytest.fixture
def tracker(host_settings: Settings) -> Iterator[Tracker]:
    made = Tracker(host_settings)
    yield made
    made.close()


@pytest.fixture
def host_app(host_settings: Settings) -> Any:
    """jobpulse's API, loading the host's kinds."""
    return create_app(host_settings)


@pytest.fixture
async def api(host_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=host_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client
    await host_app.state.services.aclose()


async def watch(
    api: httpx.AsyncClient,
    host_app: Any,
    auth: dict[str, str],
    job_id: str,
    until: set[str],
    with_details: bool = False,
) -> list[dict[str, Any]]:
    """Poll the job's progress as a front end would, until a state of ``until`` (with details, if
    ``with_details``); every body seen. Each poll must run no SQL, and the record only moves forward."""
    counter = host_app.state.services.statements
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while not seen or seen[-1]["state"] not in until or (with_details and not seen[-1]["details"]):
        assert time.monotonic() < deadline, f"job {job_id} never reached {until}; last {seen[-1:]}"
        before = counter.total
        response = await api.get(f"/jobs/{job_id}/progress/", headers=auth)
        assert counter.total == before, "a progress poll ran SQL"
        assert response.status_code == 200, response.text
        seen.append(response.json())
        await asyncio.sleep(0.03)
    versions = [body["version"] for body in seen]
    assert versions == sorted(versions)
    percents = [body["percent"] for body in seen if body["percent"] is not None]
    assert percents == sorted(percents)
    return seen


def no_trace_of(tracker: Tracker, owner: str) -> bool:
    """Whether ``owner`` has no job in the database and no progress record in Redis."""
    context = tracker._connections()
    rows, _ = context.jobs.list_owned(owner, limit=10, cursor=None)
    pattern = context.keys.progress("*")
    values = (
        cast(bytes | None, context.redis.get(key)) for key in context.redis.scan_iter(pattern, count=1000)
    )
    owners = {layout.fields(value).get(b"owner") for value in values if value is not None}
    return not rows and owner.encode() not in owners


def test_create_refuses_what_it_cannot_run_and_leaves_nothing(tracker: Tracker, owner: str) -> None:
    with pytest.raises(InvalidOptions, match=r"Unknown job kind 'nope'.*report_build") as unknown:
        tracker.create("nope", owner=owner, input={"rows": 1})
    assert unknown.value.code == "invalid_kind"
    with pytest.raises(InvalidOptions, match="submit uploads over HTTP"):
        tracker.create("spreadsheet_import", owner=owner)
    with pytest.raises(InvalidOptions, match="'rows'") as bad_input:
        tracker.create("report_build", owner=owner, input={"rows": 0})
    assert bad_input.value.http_status == 422
    with pytest.raises(InvalidOptions, match="'colour' is not a known option"):
        tracker.create("report_build", owner=owner, input={"rows": 5, "colour": "red"})
    with pytest.raises(InvalidOptions, match="'rows' is required"):
        tracker.create("report_build", owner=owner)
    with pytest.raises(InvalidOptions, match="take no options"):
        tracker.create("report_build", owner=owner, input={"rows": 5}, options={"fast": True})
    with pytest.raises(ValueError, match="owner"):
        tracker.create("report_build", owner="", input={"rows": 5})
    small = Tracker(tracker.settings.model_copy(update={"max_json_body_bytes": 16}), tracker.kinds)
    with pytest.raises(PayloadTooLarge):
        small.create("report_build", owner=owner, input={"rows": 5})
    assert no_trace_of(tracker, owner)


def test_a_kind_without_input(host_settings: Settings, owner: str) -> None:
    ping = Kind(name="host_ping", handler=None, queue="hostapp-reports", task="tests.hostapp.ping")
    tracker = Tracker(host_settings, KindRegistry([ping]))
    try:
        with pytest.raises(InvalidOptions, match="take no input"):
            tracker.create("host_ping", owner=owner, input={"rows": 1})
        job_id = tracker.create("host_ping", owner=owner)
        record = tracker._connections().jobs.get(job_id)
        assert record is not None
        assert (record.input_data, record.input_size_bytes, record.input_content_type) == (None, 0, None)
        assert tracker.run(job_id, lambda job: {"input": job.input}) is State.SUCCESS
    finally:
        tracker.close()


def test_create_undoes_the_row_when_redis_is_down(
    tracker: Tracker, host_settings: Settings, owner: str
) -> None:
    dead = host_settings.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{free_port()}/0", "redis_timeout_seconds": 0.5}
    )
    cut_off = Tracker(dead)
    try:
        with pytest.raises(ServiceUnavailable):
            cut_off.create("report_build", owner=owner, input={"rows": 5})
    finally:
        cut_off.close()
    assert no_trace_of(tracker, owner)


async def test_a_created_job_waits_with_its_input(
    tracker: Tracker, api: httpx.AsyncClient, client: httpx.AsyncClient, owner: str
) -> None:
    job_id = tracker.create("report_build", owner=owner, input=ReportRequest(rows=7))  # no task sent
    auth = {"Authorization": f"Bearer {tracker.token(owner, ttl_seconds=60)}"}  # for the front end
    progress = (await api.get(f"/jobs/{job_id}/progress/", headers=auth)).json()
    assert progress["state"] == "PENDING"
    assert progress["kind"] == "report_build"
    assert progress["message"] == "Waiting for a worker"
    # An API that does not load the host's kinds serves the same progress.
    assert (await client.get(f"/jobs/{job_id}/progress/", headers=auth)).json() == progress
    record = (await api.get(f"/jobs/{job_id}/", headers=auth)).json()
    assert record["state"] == "PENDING"
    data = {"rows": 7, "fail": None, "pace_ms": 0}
    assert record["input"]["data"] == data
    assert record["input"]["filename"] is None
    assert record["input"]["content_type"] == "application/json"
    assert record["input"]["size_bytes"] == len(b'{"rows":7,"fail":null,"pace_ms":0}')
    assert (await api.post(f"/jobs/{job_id}/cancel/", headers=auth)).status_code == 202


def test_run_in_process_drops_a_duplicate_and_wraps_outages(
    tracker: Tracker, host_settings: Settings, owner: str, redis_client: redis.Redis
) -> None:
    ran: list[str] = []

    def body(job: JobRun) -> dict[str, Any]:
        ran.append(job.id)
        return {"rows": job.input.rows}

    job_id = tracker.create("report_build", owner=owner, input={"rows": 3})
    lease = Lease(redis_client, Keyspace.from_settings(host_settings), job_id)
    assert lease.acquire()  # another worker runs it right now
    try:
        assert tracker.run(job_id, body) is None
    finally:
        lease.release()
    dead = host_settings.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{free_port()}/0", "redis_timeout_seconds": 0.5}
    )
    cut_off = Tracker(dead)
    try:
        with pytest.raises(ServiceUnavailable):  # one type for the host's Celery to retry on
            cut_off.run(job_id, body)
    finally:
        cut_off.close()
    assert ran == []
    assert tracker.run(job_id, body) is State.SUCCESS
    assert ran == [job_id]
    assert tracker.run(job_id, body) is None  # a late duplicate finds it ended
    assert tracker.run("not-a-job", body) is None
    record = tracker._connections().jobs.get(job_id)
    assert record is not None
    assert (record.state, record.result, record.attempts) == ("SUCCESS", {"rows": 3}, 1)


def test_a_host_task_cannot_hand_off(tracker: Tracker, owner: str) -> None:
    def body(job: JobRun) -> None:
        raise HandOff(State.FALLBACK_TO_GPU, [Requeue("jobpulse.ai_inference", "gpu")], message="GPU")

    job_id = tracker.create("report_build", owner=owner, input={"rows": 3})
    assert tracker.run(job_id, body) is State.FAILED
    record = tracker._connections().jobs.get(job_id)
    assert record is not None
    assert record.error_reason == FAILED_REASON


@pytest.mark.usefixtures("host_worker", "host_process")
async def test_tracked_task_succeeds_with_redis_only_progress(
    tracker: Tracker, api: httpx.AsyncClient, host_app: Any, auth: dict[str, str], owner: str
) -> None:
    job_id = tracker.create("report_build", owner=owner, input={"rows": 300, "pace_ms": 5})
    hostapp.build_report.delay(job_id)  # the host's own app sends its own task
    seen = await watch(api, host_app, auth, job_id, {"SUCCESS", "FAILED", "REJECTED_BAD_INPUT"})
    assert seen[-1]["state"] == "SUCCESS"
    assert seen[-1]["percent"] == 100.0
    running = [body for body in seen if body["state"] == "RUNNING" and body["details"]]
    assert running, "no progress with details was seen while it ran"
    assert all(0 < body["details"]["rows_done"] <= 300 for body in running)
    assert running[-1]["total"] == 300
    record = (await api.get(f"/jobs/{job_id}/", headers=auth)).json()
    assert record["state"] == "SUCCESS"
    assert record["result"] == {"rows": 300}
    assert record["started_at"] is not None and record["finished_at"] is not None


@pytest.mark.parametrize(
    ("fail", "state", "reason"),
    [
        ("crash", "FAILED", FAILED_REASON),
        ("job_failed", "FAILED", "The reporting service is down; try again in an hour."),
        ("bad_input", "REJECTED_BAD_INPUT", BAD_INPUT_REASON),
    ],
)
@pytest.mark.usefixtures("host_worker", "host_process")
async def test_tracked_task_ends_with_a_user_safe_reason(
    tracker: Tracker,
    api: httpx.AsyncClient,
    host_app: Any,
    auth: dict[str, str],
    owner: str,
    fail: str,
    state: str,
    reason: str,
) -> None:
    job_id = tracker.create("report_build", owner=owner, input={"rows": 10, "fail": fail})
    hostapp.build_report.delay(job_id)
    seen = await watch(api, host_app, auth, job_id, {"SUCCESS", "FAILED", "REJECTED_BAD_INPUT"})
    record = (await api.get(f"/jobs/{job_id}/", headers=auth)).json()
    assert (seen[-1]["state"], seen[-1]["error_reason"]) == (state, reason)
    assert (record["state"], record["error_reason"], record["result"]) == (state, reason, None)
    assert "10.0.0.7" not in str(record) and "Traceback" not in str(record)
    if state == "FAILED":  # the API's retry sends the host's task again, with the same input
        retried = await api.post(f"/jobs/{job_id}/retry/", headers=auth)
        assert retried.status_code == 202, retried.text
        again = retried.json()["id"]
        await watch(api, host_app, auth, again, {state})
        record = (await api.get(f"/jobs/{again}/", headers=auth)).json()
        assert (record["retry_of"], record["error_reason"]) == (job_id, reason)
        assert record["input"]["data"]["fail"] == fail


@pytest.mark.usefixtures("host_worker", "host_process")
async def test_cancel_stops_the_tracked_task_at_its_next_update(
    tracker: Tracker,
    api: httpx.AsyncClient,
    host_app: Any,
    auth: dict[str, str],
    owner: str,
    redis_client: redis.Redis,
    host_settings: Settings,
) -> None:
    rows = 100_000
    job_id = tracker.create("report_build", owner=owner, input={"rows": rows, "pace_ms": 10})
    hostapp.build_report.delay(job_id)
    running = await watch(api, host_app, auth, job_id, {"RUNNING"}, with_details=True)
    cancelled = await api.post(f"/jobs/{job_id}/cancel/", headers=auth)
    assert cancelled.status_code == 202, cancelled.text
    # The task stops at its next update: it gives its lease back as it ends.
    lease = Keyspace.from_settings(host_settings).lock(job_id)
    deadline = time.monotonic() + 10
    while redis_client.exists(lease):
        assert time.monotonic() < deadline, "the task did not stop after its job was cancelled"
        await asyncio.sleep(0.05)
    seen = await watch(api, host_app, auth, job_id, {"CANCELLED"})
    assert seen[-1]["version"] > running[-1]["version"]
    assert running[-1]["details"]["rows_done"] < rows
    record = (await api.get(f"/jobs/{job_id}/", headers=auth)).json()
    assert record["state"] == "CANCELLED"
    assert record["result"] is None


@pytest.mark.usefixtures("host_worker")
async def test_submitted_over_http_the_host_task_runs_it(
    api: httpx.AsyncClient, host_app: Any, auth: dict[str, str]
) -> None:
    refused = await api.post("/jobs/", headers=auth, json={"kind": "report_build", "input": {"rows": -1}})
    assert refused.status_code == 422, refused.text
    assert "'rows'" in refused.json()["error"]["message"]
    response = await api.post("/jobs/", headers=auth, json={"kind": "report_build", "input": {"rows": 500}})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["state"] == "PENDING"
    job_id = body["id"]
    assert body["links"]["progress"].endswith(f"/jobs/{job_id}/progress/")
    seen = await watch(api, host_app, auth, job_id, {"SUCCESS", "FAILED", "REJECTED_BAD_INPUT"})
    assert seen[-1]["state"] == "SUCCESS"
    record = (await api.get(f"/jobs/{job_id}/", headers=auth)).json()
    assert record["result"] == {"rows": 500}
    assert record["input"]["data"] == {"rows": 500, "fail": None, "pace_ms": 0}


@pytest.mark.usefixtures("host_process")
def test_tracked_keeps_the_task_name_and_celery_config_shares_the_broker(
    tracker: Tracker, host_settings: Settings
) -> None:
    assert hostapp.build_report.name == "tests.hostapp.tasks.build_report"
    assert hostapp.build_report.__doc__.startswith("Write ``rows`` rows of a report")
    config = tracker.celery_config()
    assert config["broker_url"] == hostapp.app.conf.broker_url
    assert config["task_routes"] == {"tests.hostapp.tasks.build_report": {"queue": "hostapp-reports"}}
    assert hostapp.app.conf.task_routes == config["task_routes"]
    assert config["task_acks_late"] is True
    assert config["task_soft_time_limit"] == host_settings.job_time_limit_seconds


def test_jobpulse_worker_leaves_the_host_queue_alone(
    host_env: dict[str, str], own_redis: RedisServer, tmp_path: Path, host_settings: Settings, owner: str
) -> None:
    """jobpulse's worker loads the host's kinds (its reaper re-sends their lost jobs to the host's queue)
    but has no task for them: it must not take the host's messages, which it would drop."""
    worker = Worker({**host_env, "REDIS_URL": own_redis.url}, tmp_path / "worker.log", concurrency=1)
    worker.start()
    settings = host_settings.model_copy(update={"redis_url": own_redis.url})
    tracker = Tracker(settings)
    app = create_celery(settings, tracker.kinds)
    try:
        job_id = tracker.create("report_build", owner=owner, input={"rows": 3})
        send_job(app, "tests.hostapp.tasks.build_report", "hostapp-reports", job_id)
        time.sleep(2)
        assert b"unregistered task" not in worker.log.read_bytes()
        assert tracker._connections().redis.llen("hostapp-reports") == 1  # still waiting for the host
    finally:
        app.close()
        tracker.close()
        worker.stop()
