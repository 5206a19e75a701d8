"""The SDK and the CLI with a deployment's own kinds: ``kinds()``, JSON jobs and ``jobpulse kinds``,
against a real API server that loads ``tests.kindsample`` and a real worker on its queue."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobpulse.client import AsyncClient, Client, KindInfo, Polling
from jobpulse.client.kinds import kinds_for_suffix
from jobpulse.errors import InvalidOptions
from jobpulse.states import State
from tests.jobs import CSV
from tests.services import ApiServer, Worker, service_env

FAST = Polling(min_interval=0.02, max_interval=0.5, jitter=0, unknown_checks=3, error_delay=0.05)
BUILT_IN = {"spreadsheet_import", "ai_inference", "video"}


def test_a_kind_is_read_from_its_item_whatever_else_the_item_holds() -> None:
    sheet = KindInfo.from_body(
        {
            "name": "sheet",
            "resource": "jobs",
            "input": {"type": "upload", "suffixes": [".CSV", ".xlsx"], "max_bytes": 10, "new": 1},
            "options": None,
            "result": None,
            "added_later": {"x": 1},
        }
    )
    assert (sheet.input_type, sheet.suffixes, sheet.max_bytes, sheet.takes_file) == (
        "upload",
        (".csv", ".xlsx"),
        10,
        True,
    )
    assert sheet.body["added_later"] == {"x": 1}
    doc = KindInfo.from_body({"name": "doc", "input": {"type": "json", "schema": {"type": "object"}}})
    assert (doc.resource, doc.input_type, doc.input_schema, doc.suffixes) == (
        "jobs",
        "json",
        {"type": "object"},
        (),
    )
    future = KindInfo.from_body({"name": "later", "input": {"type": "url"}})
    assert future.input_type is None and not future.takes_file
    also_csv = KindInfo.from_body({"name": "other", "input": {"type": "upload", "suffixes": [".csv"]}})
    assert kinds_for_suffix([sheet, doc, also_csv], ".Csv") == [sheet, also_csv]
    assert kinds_for_suffix([sheet, doc], "") == []


# -- against the real services -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_env(base_env: dict[str, str]) -> dict[str, str]:
    return {**base_env, "JOBPULSE_KIND_MODULES": "tests.kindsample"}


@pytest.fixture(scope="module")
def sample_api(sample_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """``jobpulse serve`` loading ``tests.kindsample`` besides the built-in kinds."""
    server = ApiServer(sample_env, tmp_path_factory.mktemp("sample-api") / "api.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sample_worker(sample_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """A worker that loads ``tests.kindsample`` and listens on its queue only."""
    process = Worker(sample_env, tmp_path_factory.mktemp("sample-worker") / "worker.log", 1, "sample")
    process.start()
    yield process
    process.stop()


@pytest.fixture
def sdk(sample_api: ApiServer, token: str) -> Iterator[Client]:
    with Client(sample_api.url, token=token, polling=FAST) as client:
        yield client


def jobpulse(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobpulse", *args],
        env=service_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def connection(sample_api: ApiServer, token: str) -> dict[str, str]:
    return {"JOBPULSE_URL": sample_api.url, "JOBPULSE_TOKEN": token}


@pytest.mark.integration
async def test_kinds_lists_the_built_in_and_the_declared_kinds(
    sdk: Client, sample_api: ApiServer, token: str
) -> None:
    kinds = {kind.name: kind for kind in sdk.kinds()}
    assert BUILT_IN | {"sample_count", "sample_nothing"} <= set(kinds)
    sheet = kinds["spreadsheet_import"]
    assert sheet.takes_file and ".csv" in sheet.suffixes and sheet.max_bytes
    assert kinds["video"].resource == "videos"
    count = kinds["sample_count"]
    assert (count.input_type, count.description) == ("json", "Counts to a number.")
    assert count.input_schema is not None and "to" in count.input_schema["properties"]
    assert count.options_schema is not None and "step" in count.options_schema["properties"]
    assert kinds["sample_nothing"].input_type is None
    async with AsyncClient(sample_api.url, token=token) as client:
        assert [kind.name for kind in await client.kinds()] == sorted(kinds)


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_submit_json_runs_a_json_kind_to_its_end(
    sdk: Client, sample_api: ApiServer, token: str, owner: str, sample_worker: Worker
) -> None:
    job = sdk.submit_json("sample_count", {"to": 3}, {"step": 1})
    assert (job.state, job.kind) == (State.PENDING, "sample_count")
    final = sdk.wait(job.id, timeout=60)
    assert (final.state, final.details) == (State.SUCCESS, {"last": 3})
    record = sdk.record(job.id)
    assert record["result"] == {"counted": 3, "owner": owner}
    assert record["input"]["data"] == {"to": 3, "then": "succeed", "pace_ms": 0}
    async with AsyncClient(sample_api.url, token=token, polling=FAST) as client:
        nothing = await client.submit_json("sample_nothing")
        assert (await client.wait(nothing.id, timeout=60)).state is State.SUCCESS


@pytest.mark.integration
def test_submit_json_raises_the_servers_reason(sdk: Client) -> None:
    with pytest.raises(InvalidOptions, match="'to'") as bad:
        sdk.submit_json("sample_count", {"to": "ten"})
    assert bad.value.code == "invalid_options"
    with pytest.raises(InvalidOptions, match="take a file") as upload:
        sdk.submit_json("spreadsheet_import", {})
    assert upload.value.code == "invalid_kind"


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_the_cli_submits_json_jobs_and_lists_kinds(
    tmp_path: Path, connection: dict[str, str], sample_worker: Worker
) -> None:
    done = jobpulse("submit", "--kind", "sample_count", "--input", '{"to": 3}', "--watch", env=connection)
    assert done.returncode == 0, done.stderr
    job_id, final = done.stdout.splitlines()[0], done.stdout.splitlines()[-1]
    uuid.UUID(job_id, version=4)
    assert final.startswith("SUCCESS")
    status = jobpulse("status", job_id, env=connection)
    assert status.returncode == 0 and "sample_count" in status.stdout and "None" not in status.stdout

    listed = jobpulse("kinds", env=connection)
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert BUILT_IN | {"sample_count", "sample_nothing"} <= set(lines)
    assert ".csv" in lines["spreadsheet_import"] and "JSON" in lines["sample_count"]
    as_json = jobpulse("kinds", "--json", env=connection)
    items = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert {"name", "resource", "input", "submit"} <= set(items[0])

    sheet = tmp_path / "people.csv"
    sheet.write_bytes(CSV)
    picked = jobpulse("submit", str(sheet), "--json", env=connection)
    assert picked.returncode == 0, picked.stderr
    assert json.loads(picked.stdout)["kind"] == "spreadsheet_import"


@pytest.mark.integration
def test_the_cli_refuses_mixed_up_inputs_as_usage_errors(tmp_path: Path, connection: dict[str, str]) -> None:
    sheet = tmp_path / "people.csv"
    sheet.write_bytes(CSV)
    both = jobpulse("submit", str(sheet), "--input", '{"to": 3}', env=connection)
    assert both.returncode == 2 and "not both" in both.stderr
    file_for_json = jobpulse("submit", str(sheet), "--kind", "sample_count", env=connection)
    assert file_for_json.returncode == 2 and "take no file" in file_for_json.stderr
    json_for_file = jobpulse("submit", "--kind", "spreadsheet_import", "--input", "{}", env=connection)
    assert json_for_file.returncode == 2 and "take a file" in json_for_file.stderr
    unknown = jobpulse("submit", "--kind", "nope", env=connection)
    assert unknown.returncode == 2 and "Unknown job kind 'nope'" in unknown.stderr
    bad_input = jobpulse("submit", "--kind", "sample_count", "--input", '{"to": "ten"}', env=connection)
    assert bad_input.returncode == 9 and "'to'" in bad_input.stderr
    not_object = jobpulse("submit", "--kind", "sample_count", "--input", "[3]", env=connection)
    assert not_object.returncode == 2 and "JSON object" in not_object.stderr
    odd = tmp_path / "notes.bin"
    odd.write_bytes(b"x")
    no_kind = jobpulse("submit", str(odd), env=connection)
    assert no_kind.returncode == 2 and "--kind" in no_kind.stderr and "spreadsheet_import" in no_kind.stderr
    nothing = jobpulse("submit", env=connection)
    assert nothing.returncode == 2 and "FILE" in nothing.stderr
