"""Hostile uploads: a video file must never name another file.

Playlists (HLS), ffconcat lists and the like make FFmpeg open what they name. These tests upload such
files naming another user's rendition and check that nothing of it is read: the command lines confine
every ffprobe and ffmpeg run to accepted containers and the ``file`` protocol, ffprobe refuses the
playlist before it opens anything, and the worker rejects it with a plain reason. They also check that a
video's outputs are private to the service's user.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from jobpulse.auth import mint_token
from jobpulse.errors import BadInput
from jobpulse.media import probe as probe_module
from jobpulse.media.ffmpeg import thumbnail_command, transcode_command
from jobpulse.media.probe import ProbeLimits, probe_video
from jobpulse.media.renditions import plan_renditions
from jobpulse.settings import Settings
from tests.conftest import SECRET
from tests.jobs import poll_until_terminal

BASE = "/media/videos"
REFUSED = "playlist or a format jobpulse does not accept"
LIMITS = ProbeLimits(min_duration_seconds=0.5, max_duration_seconds=3600, max_dimension=4096, max_bytes=10**9)
# Demuxers that open other files or URLs: none may be on any whitelist jobpulse passes.
FOLLOWERS = ("hls", "dash", "concat", "ffconcat", "image2", "tty", "subfile", "data", "http", "vobsub")


def hls(target: str) -> bytes:
    """A one-segment HLS media playlist whose segment is ``target``."""
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2.0,\n{target}\n#EXT-X-ENDLIST\n".encode()


def ffconcat(target: str) -> bytes:
    return f"ffconcat version 1.0\nfile '{target}'\n".encode()


@pytest.fixture(scope="module")
def victim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid 2 s video: what a hostile playlist points at."""
    path = tmp_path_factory.mktemp("victim") / "240p.mp4"
    subprocess.run(
        [
            *("ffmpeg", "-hide_banner", "-loglevel", "error", "-y"),
            *("-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=2"),
            *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)),
        ],
        check=True,
    )
    return path


def _input_options(command: list[str]) -> dict[str, str]:
    """The options before ``-i`` (each with its value), checking there is exactly one input."""
    assert command.count("-i") == 1, command
    head = command[1 : command.index("-i")]
    return {flag: value for flag, value in zip(head, [*head[1:], ""], strict=True) if flag.startswith("-")}


def test_every_command_on_an_upload_is_confined(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    source = Path("uploads/abc/input.mp4")  # relative, as the data dir may be
    rendition = plan_renditions(["240p"], 320, 240)[0]
    commands = {
        "ffprobe": probe_module.probe_command("ffprobe", source),
        "transcode": transcode_command("ffmpeg", source, Path("media/abc/240p.mp4"), rendition, "fast"),
        "thumbnail": thumbnail_command("ffmpeg", source, Path("media/abc/thumbnail.jpg"), 1.5, 320),
    }
    for name, command in commands.items():
        options = _input_options(command)
        assert options.get("-protocol_whitelist") == "file", name
        formats = set(options.get("-format_whitelist", "").split(","))
        assert {"mp4", "mov", "matroska", "webm"} <= formats, (name, formats)
        assert not formats.intersection(FOLLOWERS), (name, formats)
        assert command[command.index("-i") + 1] == f"file:{tmp_path / source}", name
    assert _input_options(commands["thumbnail"])["-ss"] == "1.500"  # a fast seek still, on the input


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("evil.m3u8", lambda target, here: hls(os.path.relpath(target, here))),
        ("evil.m3u8", lambda target, here: hls(f"file:{target}")),
        ("evil.m3u8", lambda target, here: hls(str(target))),
        ("input.mp4", lambda target, here: hls(str(target))),  # found by its content, not its name
        ("evil.ffconcat", lambda target, here: ffconcat(str(target))),
    ],
    ids=["hls-relative", "hls-file-url", "hls-absolute", "hls-named-mp4", "ffconcat"],
)
def test_a_playlist_naming_a_valid_video_is_refused(
    victim: Path, tmp_path: Path, filename: str, content: Callable[[Path, Path], bytes]
) -> None:
    upload = tmp_path / filename
    upload.write_bytes(content(victim, tmp_path))
    with pytest.raises(BadInput) as caught:
        probe_video("ffprobe", upload, LIMITS, timeout=10)
    assert REFUSED in caught.value.message
    assert "/" not in caught.value.message and "Traceback" not in caught.value.message


def test_ffprobe_never_opens_the_file_a_playlist_names(tmp_path: Path) -> None:
    """The named file is a FIFO: whoever opens it for reading shows up as a reader we can detect."""
    fifo = tmp_path / "segment.mp4"
    os.mkfifo(fifo)
    upload = tmp_path / "input.m3u8"
    upload.write_bytes(hls(f"file:{fifo}"))
    opened = False
    with ThreadPoolExecutor(1) as pool:
        probing = pool.submit(probe_video, "ffprobe", upload, LIMITS, 5.0)
        while not probing.done():
            try:  # succeeds only while something holds the FIFO open for reading
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                time.sleep(0.005)
                continue
            opened = True
            os.close(writer)  # the reader sees end-of-file and goes on
        with pytest.raises(BadInput) as caught:
            probing.result()
    assert not opened, "ffprobe opened the file the playlist names"
    assert REFUSED in caught.value.message


def upload(http: httpx.Client, auth: dict[str, str], content: bytes, filename: str) -> str:
    options = {"options": '{"renditions": ["240p"]}'}
    response = http.post(f"{BASE}/", headers=auth, data=options, files={"file": (filename, content)})
    assert response.status_code == 202, response.text
    video_id: str = response.json()["id"]
    return video_id


@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_another_users_rendition_cannot_be_read_through_a_playlist(
    http: httpx.Client, auth: dict[str, str], settings: Settings, victim: Path
) -> None:
    mine = upload(http, auth, victim.read_bytes(), "holiday.mp4")
    assert poll_until_terminal(http, auth, mine, base=BASE)[-1]["state"] == "READY"
    folder = (settings.media_dir / mine).resolve()
    rendition = folder / "240p.mp4"
    assert rendition.is_file()
    # The outputs are the service user's alone, whatever the worker's umask.
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(settings.media_dir.stat().st_mode) == 0o700
    assert {stat.S_IMODE(path.stat().st_mode) for path in folder.iterdir()} == {0o600}

    attacker = {"Authorization": f"Bearer {mint_token(SECRET, f'mallory-{uuid.uuid4()}', 120)}"}
    hostile = {
        "relative.m3u8": hls(f"../../media/{mine}/240p.mp4"),
        "absolute.m3u8": hls(f"file:{rendition}"),
        "list.ffconcat": ffconcat(str(rendition)),
        "disguised.mp4": hls(str(rendition)),
    }
    theirs = {name: upload(http, attacker, content, name) for name, content in hostile.items()}
    for name, video_id in theirs.items():
        final = poll_until_terminal(http, attacker, video_id, base=BASE)[-1]
        assert final["state"] == "REJECTED_BAD_INPUT", (name, final)
        assert REFUSED in final["error_reason"], (name, final["error_reason"])
        record = http.get(f"{BASE}/{video_id}/", headers=attacker).json()
        assert record["result"] is None, (name, record)  # no duration, size or codec of the victim's file
        assert not (settings.media_dir / video_id).exists()
