"""The kind registry: declarations, how they are found, what the API makes of them, and a kind declared
in a plain module run end to end by a real worker (the plugin and host-app kinds have their own tests)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from jobpulse import ConfigurationError, JsonInput, Kind, KindRegistry, Settings
from jobpulse.worker.app import create_worker_app
from tests.conftest import app_client
from tests.jobs import apoll_until
from tests.services import RedisServer, Worker

BUILT_IN = {"spreadsheet_import", "ai_inference", "video"}


class Point(BaseModel):
    x: int


def test_the_built_in_kinds_come_from_the_entry_points() -> None:
    registry = KindRegistry.load()
    assert set(registry.names()) >= BUILT_IN
    assert registry.names("videos") == ["video"]
    assert {"imports", "ai", "ai-gpu", "media"} <= set(registry.queues())
    ocr = registry.get("ai_inference")
    assert ocr is not None and ocr.task == "jobpulse.ai_inference"
    assert registry.routes()["jobpulse.ai_inference.gpu"] == "ai-gpu"


def test_kind_modules_add_kinds_by_module_or_attribute() -> None:
    registry = KindRegistry.load(["tests.kindsample"])
    assert {"sample_count", "sample_nothing"} <= set(registry.names("jobs"))
    one = KindRegistry.load(["tests.kindsample:KINDS"])
    assert "sample_count" in one
    for bad in ("tests.no_such_module", "tests.kindsample:NOPE", "tests.jobs:CSV"):
        with pytest.raises(ConfigurationError):
            KindRegistry.load([bad])


@pytest.mark.parametrize(
    "declare",
    [
        lambda: Kind(name="Bad-Name", handler="m:f"),
        lambda: Kind(name="x" * 33, handler="m:f"),
        lambda: Kind(name="ok", handler="no_colon"),
        lambda: Kind(name="ok", handler="m:f", queue="bad queue"),
    ],
)
def test_a_bad_declaration_is_refused_when_it_is_made(declare: Any) -> None:
    with pytest.raises(ConfigurationError):
        declare()


def test_two_kinds_of_one_name_or_two_video_kinds_are_refused() -> None:
    registry = KindRegistry([Kind(name="a", handler="m:f")])
    registry.register(Kind(name="a", handler="m:f"))  # the same declaration twice is harmless
    with pytest.raises(ConfigurationError):
        registry.register(Kind(name="a", handler="m:g"))
    with pytest.raises(ConfigurationError):
        KindRegistry.load().register(Kind(name="movie", handler="m:f", resource="videos"))


def test_options_and_input_are_validated_in_the_users_words() -> None:
    kind = Kind(name="points", handler="m:f", input=JsonInput(Point), label="point")
    assert kind.parse_input({"x": 3}) == {"x": 3}
    with pytest.raises(Exception, match="Invalid point input: 'x'"):
        kind.parse_input({"x": "three"})
    assert kind.parse_options(None, Settings()) == {}
    with pytest.raises(Exception, match="take no options"):
        kind.parse_options('{"a": 1}', Settings())


def test_a_worker_leaves_out_a_kind_whose_modules_are_missing(settings: Settings) -> None:
    needs = Kind(name="needs_gpu_lib", handler="tests.kindsample:nothing", requires=("no_such_gpu_lib",))
    fine = Kind(name="fine", handler="tests.kindsample:nothing")
    app = create_worker_app(settings, KindRegistry([needs, fine]))
    try:
        assert "jobpulse.fine" in app.tasks
        assert "jobpulse.needs_gpu_lib" not in app.tasks
    finally:
        app.close()


def test_a_handler_that_cannot_be_imported_stops_the_worker_with_its_name(settings: Settings) -> None:
    broken = Kind(name="broken", handler="tests.no_such_module:run")
    with pytest.raises(ConfigurationError, match="broken"):
        create_worker_app(settings, KindRegistry([broken]))


# -- the API ---------------------------------------------------------------------------------------


@pytest.fixture
def sample_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"kind_modules": ("tests.kindsample",)})


@pytest.mark.integration
async def test_kinds_are_listed_for_clients_without_sql(
    sample_settings: Settings, auth: dict[str, str]
) -> None:
    async with app_client(sample_settings) as client:
        assert (await client.get("/kinds/")).status_code == 401
        services = client._transport.app.state.services  # type: ignore[attr-defined]
        before = services.statements.total
        items = {item["name"]: item for item in (await client.get("/kinds/", headers=auth)).json()["items"]}
        assert services.statements.total == before
        assert BUILT_IN | {"sample_count", "sample_nothing"} <= set(items)
        sheet = items["spreadsheet_import"]
        assert sheet["input"]["type"] == "upload" and ".xlsx" in sheet["input"]["suffixes"]
        assert sheet["input"]["max_bytes"] == sample_settings.max_upload_bytes
        assert items["video"]["resource"] == "videos"
        assert items["video"]["submit"] == {"method": "POST", "path": "/media/videos/"}
        count = items["sample_count"]
        assert count["input"]["type"] == "json"
        assert count["input"]["schema"]["properties"]["to"]["type"] == "integer"
        assert count["options"]["properties"]["step"]["default"] == 1
        assert items["sample_nothing"]["input"] is None
        schema = (await client.get("/openapi.json")).json()
        body = schema["paths"]["/jobs/"]["post"]["requestBody"]["content"]
        assert set(body["multipart/form-data"]["schema"]["properties"]["kind"]["enum"]) == {
            "ai_inference",
            "spreadsheet_import",
        }
        titles = {variant["title"] for variant in body["application/json"]["schema"]["oneOf"]}
        assert {"sample_count", "sample_nothing"} <= titles


@pytest.mark.integration
@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [
        ({"kind": "nope"}, 422, "invalid_kind", "Unknown job kind 'nope'"),
        ({"kind": "video"}, 422, "invalid_kind", "/media/videos/"),
        ({"kind": "spreadsheet_import"}, 422, "invalid_kind", "take a file"),
        ({"kind": "sample_count", "input": {"to": "ten"}}, 422, "invalid_options", "'to'"),
        ({"kind": "sample_count", "input": {"to": 3, "extra": 1}}, 422, "invalid_options", "'extra'"),
        (
            {"kind": "sample_count", "input": {"to": 3}, "options": {"step": 0}},
            422,
            "invalid_options",
            "step",
        ),
        ({"kind": "sample_nothing", "input": {"a": 1}}, 422, "invalid_options", "take no input"),
        ({"input": {}}, 422, "invalid_options", "'kind' is required"),
    ],
)
async def test_a_json_submission_is_refused_with_its_reason(
    sample_settings: Settings,
    auth: dict[str, str],
    own_redis: RedisServer,
    body: dict[str, Any],
    status: int,
    code: str,
    words: str,
) -> None:
    idle = sample_settings.model_copy(update={"redis_url": own_redis.url})
    async with app_client(idle) as client:
        response = await client.post("/jobs/", headers=auth, json=body)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["code"] == code
        assert words in error["message"]


@pytest.mark.integration
async def test_json_and_form_mix_ups_are_refused(
    sample_settings: Settings, auth: dict[str, str], own_redis: RedisServer
) -> None:
    idle = sample_settings.model_copy(update={"redis_url": own_redis.url})
    async with app_client(idle) as client:
        not_json = await client.post(
            "/jobs/", headers={**auth, "content-type": "application/json"}, content=b"{kind"
        )
        assert (not_json.status_code, not_json.json()["error"]["code"]) == (400, "invalid_json")
        form = await client.post(
            "/jobs/", headers=auth, data={"kind": "sample_count"}, files={"file": ("a.json", b"{}")}
        )
        assert form.status_code == 422
        assert "take no file" in form.json()["error"]["message"]


@pytest.mark.integration
async def test_a_json_job_is_queued_with_its_input_in_the_record(
    sample_settings: Settings, auth: dict[str, str], own_redis: RedisServer
) -> None:
    idle = sample_settings.model_copy(update={"redis_url": own_redis.url})
    async with app_client(idle) as client:
        submitted = await client.post(
            "/jobs/", headers=auth, json={"kind": "sample_count", "input": {"to": 5}, "options": {"step": 2}}
        )
        assert submitted.status_code == 202, submitted.text
        body = submitted.json()
        assert (body["state"], body["kind"], body["details"]) == ("PENDING", "sample_count", None)
        assert body["links"]["progress"] == f"/jobs/{body['id']}/progress/"
        record = (await client.get(f"/jobs/{body['id']}/", headers=auth)).json()
        assert record["input"] == {
            "filename": None,
            "size_bytes": len(b'{"to":5,"then":"succeed","pace_ms":0}'),
            "content_type": "application/json",
            "data": {"to": 5, "then": "succeed", "pace_ms": 0},
        }
        assert record["options"] == {"step": 2}
        listed = (await client.get("/jobs/", headers=auth)).json()["items"]
        assert [item["id"] for item in listed] == [body["id"]]


# -- a real worker ---------------------------------------------------------------------------------


@pytest.fixture
def sample_worker(base_env: dict[str, str], tmp_path: Path) -> Iterator[Worker]:
    """A ``jobpulse worker`` that loads ``tests.kindsample`` and listens on its queue only."""
    env = {**base_env, "JOBPULSE_KIND_MODULES": "tests.kindsample"}
    process = Worker(env, tmp_path / "worker.log", concurrency=1, queues="sample")
    process.start()
    yield process
    process.stop()


async def submit(client: httpx.AsyncClient, auth: dict[str, str], **input_: Any) -> str:
    response = await client.post("/jobs/", headers=auth, json={"kind": "sample_count", "input": input_})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_a_module_kind_runs_to_each_of_its_endings(
    sample_settings: Settings, auth: dict[str, str], owner: str, sample_worker: Worker
) -> None:
    async with app_client(sample_settings) as client:
        counted = await submit(client, auth, to=40, pace_ms=25)
        rejected = await submit(client, auth, to=3, then="reject")
        failed = await submit(client, auth, to=3, then="fail")
        crashed = await submit(client, auth, to=3, then="crash")
        nothing = await client.post("/jobs/", headers=auth, json={"kind": "sample_nothing"})

        seen: list[dict[str, Any]] = []
        while not seen or not seen[-1]["terminal"]:
            seen.append((await client.get(f"/jobs/{counted}/progress/", headers=auth)).json())
            await asyncio.sleep(0.02)
        versions = [body["version"] for body in seen if body["state"] != "UNKNOWN"]
        assert versions == sorted(versions)
        assert any(body["state"] == "RUNNING" and body["details"] for body in seen)
        end = seen[-1]
        assert (end["state"], end["percent"], end["details"]) == ("SUCCESS", 100, {"last": 40})
        record = (await client.get(f"/jobs/{counted}/", headers=auth)).json()
        assert record["result"] == {"counted": 40, "owner": owner}

        ends = {
            job_id: await apoll_until(client, auth, job_id, {"REJECTED_BAD_INPUT", "FAILED", "SUCCESS"})
            for job_id in (rejected, failed, crashed, nothing.json()["id"])
        }
        assert (ends[rejected]["state"], ends[rejected]["error_reason"]) == (
            "REJECTED_BAD_INPUT",
            "The count was refused, as asked.",
        )
        assert (ends[failed]["state"], ends[failed]["error_reason"]) == (
            "FAILED",
            "The count could not finish, as asked.",
        )
        assert ends[crashed]["state"] == "FAILED"
        assert "/secret/path" not in ends[crashed]["error_reason"]
        assert "internal error" in ends[crashed]["error_reason"]
        assert ends[nothing.json()["id"]]["state"] == "SUCCESS"

        # A FAILED JSON job is retried with the same input.
        again = await client.post(f"/jobs/{failed}/retry/", headers=auth)
        assert again.status_code == 202, again.text
        retried = (await client.get(f"/jobs/{again.json()['id']}/", headers=auth)).json()
        assert (retried["retry_of"], retried["input"]["data"]) == (
            failed,
            {"to": 3, "then": "fail", "pace_ms": 0},
        )
        assert (await apoll_until(client, auth, retried["id"], {"FAILED"}))["state"] == "FAILED"


@pytest.mark.integration
async def test_a_kind_this_api_does_not_declare_is_still_served_on_the_jobs_routes(
    settings: Settings, sample_settings: Settings, auth: dict[str, str], own_redis: RedisServer
) -> None:
    """A host application may create jobs of kinds the API process does not load: their progress is
    served on /jobs/ (the record's kind is not a video kind), never on /media/videos/."""
    with_sample = sample_settings.model_copy(update={"redis_url": own_redis.url})
    without = settings.model_copy(update={"redis_url": own_redis.url})
    async with app_client(with_sample) as client:
        job_id = await submit(client, auth, to=3)
    async with app_client(without) as client:
        body = (await client.get(f"/jobs/{job_id}/progress/", headers=auth)).json()
        assert (body["state"], body["kind"]) == ("PENDING", "sample_count")
        video_route = (await client.get(f"/media/videos/{job_id}/progress/", headers=auth)).json()
        assert video_route["state"] == "UNKNOWN"
        assert (await client.get(f"/jobs/{job_id}/", headers=auth)).json()["kind"] == "sample_count"
        cancelled = await client.post(f"/jobs/{job_id}/cancel/", headers=auth)
        assert cancelled.json()["state"] == "CANCELLED"
    assert uuid.UUID(job_id).version == 4
