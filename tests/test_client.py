"""The Python SDK against the real API server, a real Celery worker, Redis and the database."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from jobpulse.auth import mint_token
from jobpulse.client import AsyncClient, Client, Polling
from jobpulse.client.cli import EXIT_ERROR, EXIT_NOT_FOUND
from jobpulse.db.engine import create_db_engine
from jobpulse.db.repository import JobRepository
from jobpulse.errors import AuthenticationError, Conflict, DeadlineExceeded, InvalidOptions, NotFound
from jobpulse.keys import Keyspace
from jobpulse.settings import Settings
from jobpulse.states import State
from tests.conftest import SECRET
from tests.jobs import CSV
from tests.services import ApiServer, service_env

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]

FAST = Polling(min_interval=0.02, max_interval=0.5, jitter=0, unknown_checks=3, error_delay=0.05)


def big_csv(rows: int) -> bytes:
    return b"id,name\n" + b"".join(b"%d,person %d\n" % (n, n) for n in range(rows))


@pytest.fixture
def sdk(api_server: ApiServer, token: str) -> Iterator[Client]:
    with Client(api_server.url, token=token, polling=FAST) as client:
        yield client


def test_submit_watch_and_read_a_spreadsheet_job(sdk: Client, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(CSV)
    job = sdk.submit_spreadsheet(path)
    assert job.state is State.PENDING and job.kind == "spreadsheet_import"
    seen = list(sdk.watch(job.id))
    assert seen[-1].state is State.SUCCESS and seen[-1].terminal and seen[-1].percent == 100
    assert [r.version for r in seen] == sorted({r.version for r in seen})  # each record once, in order
    record = sdk.record(job.id)
    assert record["state"] == "SUCCESS" and record["input"]["filename"] == "people.csv"
    assert sdk.progress(job.id).version == seen[-1].version
    items, _cursor = sdk.records(limit=5)
    assert job.id in [item["id"] for item in items]
    with pytest.raises(Conflict):
        sdk.cancel(job.id)


def test_bad_input_and_bad_requests_raise_the_servers_errors(sdk: Client, api_server: ApiServer) -> None:
    job = sdk.submit_spreadsheet(b"\x00\x01 not a spreadsheet \xff" * 10, filename="junk.xlsx")
    final = sdk.wait(job.id)
    assert final.state is State.REJECTED_BAD_INPUT and final.error_reason
    assert "/" not in final.error_reason
    with pytest.raises(InvalidOptions, match="kind"):
        sdk.submit(CSV, kind="no_such_kind", filename="a.csv")
    with pytest.raises(NotFound):
        sdk.record(str(uuid.uuid4()))
    assert sdk.progress(str(uuid.uuid4())).state is State.UNKNOWN
    with Client(api_server.url, token="forged") as anonymous, pytest.raises(AuthenticationError):
        anonymous.progress(job.id)


def test_progress_many_in_one_call(sdk: Client, owner: str, api_server: ApiServer) -> None:
    ids = [sdk.submit_spreadsheet(CSV, filename=f"{n}.csv").id for n in range(3)]
    with Client(api_server.url, token=mint_token(SECRET, "mallory", 60)) as stranger:
        foreign = stranger.submit_spreadsheet(CSV, filename="x.csv").id
    missing = str(uuid.uuid4())
    items = sdk.progress_many([*ids, foreign, missing])
    assert {items[i].state for i in ids} <= {State.PENDING, State.RUNNING, State.SUCCESS}
    assert items[foreign].state is State.UNKNOWN and items[missing].state is State.UNKNOWN


def test_a_watch_survives_the_api_restarting(base_env: dict[str, str], tmp_path: Path, token: str) -> None:
    server = ApiServer(base_env, tmp_path / "api.log")
    server.start()
    try:
        with Client(server.url, token=token, polling=FAST) as client:
            job = client.submit_spreadsheet(big_csv(30_000), filename="big.csv")
            watch = client.watch(job.id, timeout=120)
            first = next(watch)
            assert not first.terminal
            server.stop()  # the watch is between two polls: its next requests are refused
            restart = threading.Timer(1.0, server.start)
            restart.start()
            rest = list(watch)
            restart.join()
        assert rest[-1].state is State.SUCCESS
    finally:
        server.stop()


def test_a_watch_whose_record_vanished_resolves_from_the_db_record(
    sdk: Client, redis_client: redis.Redis, settings: Settings
) -> None:
    job = sdk.submit_spreadsheet(big_csv(30_000), filename="big.csv")
    watch = sdk.watch(job.id, timeout=120)
    assert not next(watch).terminal
    deadline = time.monotonic() + 60
    while sdk.record(job.id)["state"] != "SUCCESS":  # the job ends while the watch is paused...
        assert time.monotonic() < deadline
        time.sleep(0.05)
    redis_client.delete(Keyspace.from_settings(settings).progress(job.id))  # ...and its record is gone
    rest = list(watch)
    assert rest[0].state is State.UNKNOWN
    assert rest[-1].state is State.SUCCESS and rest[-1].version == 0  # from the DB record
    assert len(rest) == 2


def test_a_watch_of_an_unknown_id_ends_not_found(sdk: Client) -> None:
    with pytest.raises(NotFound):
        sdk.wait(str(uuid.uuid4()), timeout=30)


def test_the_deadline_ends_a_watch(sdk: Client) -> None:
    job = sdk.submit_spreadsheet(big_csv(200_000), filename="huge.csv")
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        sdk.wait(job.id, timeout=0.3)
    assert time.monotonic() - started < 2
    with contextlib.suppress(Conflict):  # the import may have finished meanwhile (it is fast now)
        sdk.cancel(job.id)


async def test_the_async_client_behaves_the_same(api_server: ApiServer, token: str) -> None:
    async with AsyncClient(api_server.url, token=token, polling=FAST) as client:
        job = await client.submit_spreadsheet(CSV, filename="people.csv")
        seen = [record async for record in client.watch(job.id)]
        assert seen[-1].state is State.SUCCESS
        assert (await client.wait(job.id)).version == seen[-1].version
        assert (await client.record(job.id))["state"] == "SUCCESS"
        assert (await client.progress_many([job.id]))[job.id].state is State.SUCCESS
        with pytest.raises(NotFound):
            await client.wait(str(uuid.uuid4()), timeout=30)
        with pytest.raises(Conflict):
            await client.cancel(job.id)


@pytest.fixture
def failed_job(
    idle_client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> Callable[[], Awaitable[str]]:
    """Make a FAILED job of the caller's whose input is kept (queued where no worker listens, then
    ended FAILED in the database as a worker would)."""

    async def make() -> str:
        files = {"file": ("people.csv", CSV, "text/csv")}
        response = await idle_client.post(
            "/jobs/", headers=auth, data={"kind": "spreadsheet_import"}, files=files
        )
        job_id: str = response.json()["id"]
        engine = create_db_engine(settings.resolved_database_url)
        try:
            assert JobRepository(engine).finish(job_id, State.FAILED, error_reason="It broke.")
        finally:
            engine.dispose()
        return job_id

    return make


async def test_delete_and_retry(
    sdk: Client, failed_job: Callable[[], Awaitable[str]], api_server: ApiServer, token: str
) -> None:
    failed = await failed_job()
    retried = sdk.retry(failed)
    assert retried.id != failed and retried.state is State.PENDING
    assert sdk.wait(retried.id, timeout=60).state is State.SUCCESS
    assert sdk.record(retried.id)["retry_of"] == failed
    with pytest.raises(Conflict, match="FAILED"):
        sdk.retry(retried.id)
    sdk.delete(retried.id)
    with pytest.raises(NotFound):
        sdk.record(retried.id)
    assert sdk.progress(retried.id).state is State.UNKNOWN
    with pytest.raises(NotFound):
        sdk.delete(retried.id)

    async with AsyncClient(api_server.url, token=token, polling=FAST) as client:
        again = await client.retry(failed)
        assert (await client.record(again.id))["retry_of"] == failed
        await client.delete(failed)
        with pytest.raises(NotFound):
            await client.retry(failed)
        with pytest.raises(NotFound):
            await client.delete(failed)
        await client.delete(again.id)
        assert (await client.progress(again.id)).state is State.UNKNOWN


async def test_delete_and_retry_from_the_shell(
    sdk: Client, failed_job: Callable[[], Awaitable[str]], api_server: ApiServer, token: str
) -> None:
    failed = await failed_job()
    env = service_env({"JOBPULSE_URL": api_server.url, "JOBPULSE_TOKEN": token})

    def jobpulse(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "jobpulse", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    retried = jobpulse("retry", failed, "--watch")
    assert retried.returncode == 0, retried.stderr
    new_id = retried.stdout.splitlines()[0]
    assert sdk.record(new_id)["retry_of"] == failed and retried.stdout.splitlines()[-1].startswith("SUCCESS")
    refused = jobpulse("retry", new_id)
    assert refused.returncode == EXIT_ERROR and "FAILED" in refused.stderr
    deleted = jobpulse("delete", failed, "--json")
    assert deleted.returncode == 0 and json.loads(deleted.stdout) == {"id": failed, "deleted": True}
    assert jobpulse("delete", failed).returncode == EXIT_NOT_FOUND
