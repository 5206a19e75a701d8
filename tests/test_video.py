"""Videos end to end: the real API server, a real worker, real ffmpeg and ffprobe."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from jobpulse.auth import mint_token
from jobpulse.client import Client
from jobpulse.settings import Settings
from jobpulse.states import State
from tests.conftest import SECRET, app_client, settings_from
from tests.jobs import poll_until_terminal
from tests.services import ApiServer, service_env

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]

BASE = "/media/videos"


def make_video(path: Path, *, seconds: float, size: str = "1280x720", audio: bool = True) -> Path:
    """A test pattern with a sine tone, made by ffmpeg (ultrafast: the tests transcode it again)."""
    command = ["-f", "lavfi", "-i", f"testsrc=size={size}:rate=25:duration={seconds}"]
    if audio:
        command += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", "aac"]
    ffmpeg(*command, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-shortest", str(path))
    return path


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every input of this module, made once."""
    folder = tmp_path_factory.mktemp("media")
    clip = make_video(folder / "clip.mp4", seconds=4)
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])  # the index is at the end: gone
    moved = folder / "moved.mp4"  # the same clip with its index moved to the front
    ffmpeg("-i", str(clip), "-c", "copy", "-movflags", "+faststart", str(moved))
    cut = folder / "cut.mp4"
    cut.write_bytes(moved.read_bytes()[: moved.stat().st_size // 2])  # the index survives, half the data not
    ffmpeg("-f", "lavfi", "-i", "sine=duration=2", "-c:a", "aac", str(folder / "audio.m4a"))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "1", str(folder / "image.png"))
    return {
        "clip": clip,
        "cut": cut,
        "long": make_video(folder / "long.mp4", seconds=40),
        "short": make_video(folder / "short.mp4", seconds=0.1, size="320x240", audio=False),
        "truncated": truncated,
        "audio": folder / "audio.m4a",
        "image": folder / "image.png",
    }


def upload(
    http: httpx.Client, auth: dict[str, str], content: bytes, filename: str, options: str | None = None
) -> httpx.Response:
    data = {"options": options} if options is not None else {}
    return http.post(f"{BASE}/", headers=auth, data=data, files={"file": (filename, content, "video/mp4")})


def ffprobe(path: Path) -> dict[str, Any]:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
        capture_output=True,
        check=True,
    )
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def test_a_video_becomes_ready_with_renditions_and_a_thumbnail(
    http: httpx.Client, auth: dict[str, str], media: dict[str, Path], tmp_path: Path
) -> None:
    response = upload(http, auth, media["clip"].read_bytes(), "holiday.mp4")
    assert response.status_code == 202, response.text
    submitted = response.json()
    assert submitted["state"] == "PENDING" and submitted["kind"] == "video"
    assert submitted["links"]["progress"] == f"{BASE}/{submitted['id']}/progress/"
    video_id = submitted["id"]

    seen = poll_until_terminal(http, auth, video_id, base=BASE, interval=0.03)
    states = [body["state"] for body in seen]
    assert states[-1] == "READY", seen[-1]
    assert "PROCESSING" in states
    processing = [body for body in seen if body["state"] == "PROCESSING"]
    percents = [body["percent"] for body in processing if body["percent"] is not None]
    assert percents == sorted(percents) and len(set(percents)) >= 3, percents
    stages = {body["stage"] for body in processing}
    assert {"transcoding_360p", "transcoding_720p"} <= stages, stages
    assert any(body["eta_seconds"] is not None for body in processing)
    # One bar across both renditions: 360p, the cheaper, takes well under half of it.
    by_stage = {
        stage: [body["percent"] for body in processing if body["stage"] == stage]
        for stage in ("transcoding_360p", "transcoding_720p")
    }
    assert min(by_stage["transcoding_360p"]) >= 2.0 and max(by_stage["transcoding_360p"]) < 40.0, by_stage
    assert min(by_stage["transcoding_720p"]) > 15.0 and max(by_stage["transcoding_720p"]) <= 97.0, by_stage
    assert seen[-1]["percent"] == 100.0 and seen[-1]["terminal"] is True

    record = http.get(f"{BASE}/{video_id}/", headers=auth).json()
    assert record["state"] == "READY" and record["kind"] == "video"
    assert record["input"]["filename"] == "holiday.mp4"
    assert record["input"]["size_bytes"] == media["clip"].stat().st_size
    result = record["result"]
    assert result["duration_seconds"] == pytest.approx(4.0, abs=0.1)
    assert (result["width"], result["height"]) == (1280, 720)
    assert result["video_codec"] == "h264" and result["audio_codec"] == "aac"
    assert result["frame_rate"] == pytest.approx(25.0)
    sizes = {r["name"]: (r["width"], r["height"]) for r in result["renditions"]}
    assert sizes == {"360p": (640, 360), "720p": (1280, 720)}

    for rendition in result["renditions"]:
        # The signed link works without a token: what a <video src> needs.
        download = http.get(rendition["url"])
        assert download.status_code == 200
        assert download.headers["content-type"] == "video/mp4"
        assert len(download.content) == rendition["bytes"] > 0
        saved = tmp_path / rendition["file"]
        saved.write_bytes(download.content)
        probed = ffprobe(saved)
        video = next(s for s in probed["streams"] if s["codec_type"] == "video")
        audio = next(s for s in probed["streams"] if s["codec_type"] == "audio")
        assert (video["codec_name"], video["width"], video["height"]) == ("h264", *sizes[rendition["name"]])
        assert audio["codec_name"] == "aac"
        assert float(probed["format"]["duration"]) == pytest.approx(4.0, abs=0.15)
        # +faststart: the index (moov) comes before the media data (mdat).
        assert download.content.index(b"moov") < download.content.index(b"mdat")

    thumbnail = http.get(result["thumbnail"]["url"])
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"
    assert thumbnail.content[:3] == b"\xff\xd8\xff" and thumbnail.content[-2:] == b"\xff\xd9"
    (tmp_path / "thumb.jpg").write_bytes(thumbnail.content)
    probed = ffprobe(tmp_path / "thumb.jpg")["streams"][0]
    assert probed["codec_name"] == "mjpeg" and probed["width"] == 640

    listing = http.get(f"{BASE}/", headers=auth).json()
    assert [item["id"] for item in listing["items"]] == [video_id]


def test_range_requests_return_the_right_bytes(
    http: httpx.Client, auth: dict[str, str], media: dict[str, Path], owner: str
) -> None:
    video_id = upload(http, auth, media["clip"].read_bytes(), "clip.mp4").json()["id"]
    assert poll_until_terminal(http, auth, video_id, base=BASE)[-1]["state"] == "READY"
    rendition = http.get(f"{BASE}/{video_id}/", headers=auth).json()["result"]["renditions"][0]
    plain = f"{BASE}/{video_id}/files/{rendition['file']}"
    whole = http.get(plain, headers=auth).content  # the bearer token works too
    assert len(whole) == rendition["bytes"]
    assert http.get(plain, headers=auth).headers["accept-ranges"] == "bytes"

    part = http.get(plain, headers={**auth, "Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-1099/{len(whole)}"
    assert part.content == whole[100:1100]
    tail = http.get(rendition["url"], headers={"Range": "bytes=-500"})
    assert tail.status_code == 206 and tail.content == whole[-500:]
    beyond = http.get(plain, headers={**auth, "Range": f"bytes={len(whole) + 10}-"})
    assert beyond.status_code == 416

    # Without a token or a valid signature, or as someone else: nothing.
    assert http.get(plain).status_code == 401
    assert http.get(rendition["url"].replace("signature=", "signature=x")).status_code == 401
    stranger = {"Authorization": f"Bearer {mint_token(SECRET, 'mallory', 60)}"}
    assert http.get(plain, headers=stranger).status_code == 404
    assert http.get(f"{BASE}/{video_id}/files/..%2Fjobpulse.db", headers=auth).status_code == 404
    assert http.get(f"{BASE}/{video_id}/files/input.mp4", headers=auth).status_code == 404


@pytest.mark.parametrize(
    ("name", "filename", "reason"),
    [
        ("random", "random.mp4", "not a video we can read"),
        ("truncated", "truncated.mp4", "not a video we can read"),
        ("cut", "cut.mp4", "incomplete or damaged"),
        ("audio", "song.mp4", "no picture"),
        ("short", "blink.mp4", "too short"),
        ("image", "photo.mp4", "still image"),
    ],
)
def test_bad_videos_are_rejected_with_a_plain_reason(
    http: httpx.Client, auth: dict[str, str], media: dict[str, Path], name: str, filename: str, reason: str
) -> None:
    content = bytes(range(256)) * 200 + uuid.uuid4().bytes if name == "random" else media[name].read_bytes()
    response = upload(http, auth, content, filename)
    assert response.status_code == 202
    video_id = response.json()["id"]
    final = poll_until_terminal(http, auth, video_id, base=BASE)[-1]
    assert final["state"] == "REJECTED_BAD_INPUT", final
    assert reason in final["error_reason"]
    assert "/" not in final["error_reason"] and "Traceback" not in final["error_reason"]
    record = http.get(f"{BASE}/{video_id}/", headers=auth).json()
    assert record["state"] == "REJECTED_BAD_INPUT" and record["error_reason"] == final["error_reason"]


def test_bad_requests_are_refused_at_the_door(http: httpx.Client, auth: dict[str, str]) -> None:
    empty = upload(http, auth, b"", "empty.mp4")
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "empty_file"
    bad_options = upload(http, auth, b"x" * 100, "a.mp4", options='{"renditions": ["999p"]}')
    assert bad_options.status_code == 422
    assert "unknown rendition '999p'" in bad_options.json()["error"]["message"]
    assert http.post(f"{BASE}/", headers=auth, data={"options": "{}"}).status_code == 400


def test_renditions_are_never_upscaled(
    http: httpx.Client, auth: dict[str, str], media: dict[str, Path], tmp_path: Path
) -> None:
    small = make_video(tmp_path / "small.mp4", seconds=1, size="480x270", audio=False)
    video_id = upload(
        http, auth, small.read_bytes(), "small.mp4", '{"renditions": ["720p", "1080p"]}'
    ).json()["id"]
    assert poll_until_terminal(http, auth, video_id, base=BASE)[-1]["state"] == "READY"
    result = http.get(f"{BASE}/{video_id}/", headers=auth).json()["result"]
    assert [(r["name"], r["width"], r["height"]) for r in result["renditions"]] == [("270p", 480, 270)]
    assert result["audio_codec"] is None


def _ffmpeg_processes(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "ffmpeg" and any(marker in part for part in cmdline):
            found.append(process)
    return found


def test_cancel_during_transcoding_kills_ffmpeg_and_removes_outputs(
    http: httpx.Client, auth: dict[str, str], media: dict[str, Path], settings: Settings
) -> None:
    video_id = upload(http, auth, media["long"].read_bytes(), "long.mp4").json()["id"]
    deadline = time.monotonic() + 60
    while True:
        body = http.get(f"{BASE}/{video_id}/progress/", headers=auth).json()
        if body["state"] == "PROCESSING" and (body["stage"] or "").startswith("transcoding"):
            break
        assert not body["terminal"] and time.monotonic() < deadline, body
        time.sleep(0.05)
    assert _ffmpeg_processes(video_id), "ffmpeg should be running for this video"
    response = http.post(f"{BASE}/{video_id}/cancel/", headers=auth)
    assert response.status_code == 202 and response.json()["state"] == "CANCELLED"

    deadline = time.monotonic() + 10
    folder = settings.media_dir / video_id
    while _ffmpeg_processes(video_id) or folder.exists():
        assert time.monotonic() < deadline, "ffmpeg or the outputs outlived the cancel"
        time.sleep(0.1)
    record = http.get(f"{BASE}/{video_id}/", headers=auth).json()
    assert record["state"] == "CANCELLED"
    assert record["result"]["renditions"] == [] and record["result"]["thumbnail"] is None
    assert http.post(f"{BASE}/{video_id}/cancel/", headers=auth).status_code == 409
    assert http.get(f"{BASE}/{video_id}/progress/", headers=auth).json()["state"] == "CANCELLED"


def test_video_and_job_ids_do_not_cross(
    http: httpx.Client, auth: dict[str, str], media: dict[str, Path]
) -> None:
    video_id = upload(http, auth, media["clip"].read_bytes(), "clip.mp4").json()["id"]
    assert http.get(f"/jobs/{video_id}/", headers=auth).status_code == 404
    assert http.get(f"/jobs/{video_id}/progress/", headers=auth).json()["state"] == "UNKNOWN"
    assert http.get(f"{BASE}/{video_id}/progress/", headers=auth).json()["kind"] == "video"
    poll_until_terminal(http, auth, video_id, base=BASE)


async def test_video_progress_runs_zero_sql(
    client: httpx.AsyncClient, auth: dict[str, str], app: Any, media: dict[str, Path]
) -> None:
    files = {"file": ("clip.mp4", media["clip"].read_bytes(), "video/mp4")}
    video_id = (await client.post(f"{BASE}/", headers=auth, files=files)).json()["id"]
    counter = app.state.services.statements
    before = counter.total
    stranger = {"Authorization": f"Bearer {mint_token(SECRET, 'mallory', 60)}"}
    statuses = set()
    for path, headers in [
        (f"{BASE}/{video_id}/progress/", auth),
        (f"{BASE}/{video_id}/progress", auth),
        (f"{BASE}/{uuid.uuid4()}/progress/", auth),
        (f"{BASE}/{video_id}/progress/", stranger),
        (f"{BASE}/not-an-id/progress/", auth),
        (f"{BASE}/{video_id}/progress/", {}),
    ] * 5:
        response = await client.get(path, headers=headers)
        statuses.add(response.status_code)
    assert counter.total == before
    assert statuses == {200, 401}


def test_the_sdk_and_the_cli_handle_videos(
    api_server: ApiServer, token: str, media: dict[str, Path], tmp_path: Path
) -> None:
    with Client(api_server.url, token=token) as sdk:
        submitted = sdk.submit_video(media["clip"], options={"renditions": ["360p"]})
        final = sdk.wait(submitted.id, "videos", timeout=120)
        assert final.state is State.READY and final.percent == 100.0
        record = sdk.record(submitted.id, "videos")
        assert [r["name"] for r in record["result"]["renditions"]] == ["360p"]

    copy = tmp_path / "clip.mp4"
    copy.write_bytes(media["clip"].read_bytes())
    env = service_env({"JOBPULSE_URL": api_server.url, "JOBPULSE_TOKEN": token})

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "jobpulse", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    done = cli("submit", str(copy), "--watch", "--options", '{"renditions": ["240p"]}')
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("READY")
    audio = tmp_path / "song.mp4"
    audio.write_bytes(media["audio"].read_bytes())
    rejected = cli("submit", str(audio), "--watch")
    assert rejected.returncode == 3 and "no picture" in rejected.stdout


async def test_an_upload_over_the_limit_is_refused_while_streaming(
    base_env: dict[str, str], auth: dict[str, str]
) -> None:
    settings = settings_from(base_env, video_max_upload_bytes=10_000)
    uploads_before = set(settings.upload_dir.iterdir()) if settings.upload_dir.exists() else set()
    async with app_client(settings) as client:
        files = {"file": ("big.mp4", b"\0" * 50_000, "video/mp4")}
        response = await client.post(f"{BASE}/", headers=auth, files=files)
    assert response.status_code == 413
    assert response.json()["error"]["message"] == "The file is larger than the limit of 9 KB."
    assert (set(settings.upload_dir.iterdir()) if settings.upload_dir.exists() else set()) == uploads_before
