"""The media pieces on their own: ffprobe's verdicts, the rendition plan, options, the ffmpeg runner."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from jobpulse.auth import check_url_signature, url_signature
from jobpulse.errors import AuthenticationError, BadInput, InvalidOptions, JobCancelled, JobFailed
from jobpulse.media.containers import ACCEPTED_DEMUXERS, is_accepted, refused_demuxer
from jobpulse.media.ffmpeg import FFmpegError, FFmpegProgress, run_ffmpeg, transcode_command
from jobpulse.media.files import fresh_media_folder, private_file
from jobpulse.media.options import parse_video_options
from jobpulse.media.probe import ProbeLimits, parse_probe, probe_video
from jobpulse.media.renditions import plan_renditions
from jobpulse.settings import Settings

LIMITS = ProbeLimits(
    min_duration_seconds=0.5, max_duration_seconds=4 * 3600, max_dimension=4096, max_bytes=10**9
)


def probe(
    *streams: dict[str, Any], duration: str | None = "12.5", container: str = "mov,mp4,m4a,3gp,3g2,mj2"
) -> dict[str, Any]:
    fmt: dict[str, Any] = {"format_name": container}
    if duration is not None:
        fmt["duration"] = duration
    return {"format": fmt, "streams": list(streams)}


def video(width: int = 1920, height: int = 1080, **extra: Any) -> dict[str, Any]:
    return {"codec_type": "video", "codec_name": "h264", "width": width, "height": height, **extra}


AUDIO = {"codec_type": "audio", "codec_name": "aac"}


def test_a_good_probe_gives_the_video_as_shown() -> None:
    info = parse_probe(probe(video(avg_frame_rate="30000/1001"), AUDIO), 1000, LIMITS)
    assert (info.width, info.height, info.duration_seconds) == (1920, 1080, 12.5)
    assert (info.video_codec, info.audio_codec, info.frame_rate) == ("h264", "aac", 29.97)
    # A phone video recorded upright: stored landscape, shown portrait.
    rotated = video(side_data_list=[{"side_data_type": "Display Matrix", "rotation": -90}])
    info = parse_probe(probe(rotated), 1000, LIMITS)
    assert (info.width, info.height, info.audio_codec) == (1080, 1920, None)
    assert info.columns()["duration_seconds"] == 12.5


@pytest.mark.parametrize(
    ("data", "size", "reason"),
    [
        ({}, 10, "not a video we can read"),
        (probe(AUDIO), 10, "no picture"),
        (probe(video(disposition={"attached_pic": 1}), AUDIO), 10, "no picture"),  # a song with cover art
        (probe({"codec_type": "data"}), 10, "no video track"),
        (probe(video(64, 64), duration=None, container="png_pipe"), 10, "still image"),
        (probe(video(), duration=None), 10, "length cannot be read"),
        (probe(video(), duration="0.1"), 10, "too short (0.10 s); the minimum is 0.5 s"),
        (probe(video(), duration="20000"), 10, "too long (5 h 33 min); the maximum is 4 h 0 min"),
        (probe(video(7680, 4320)), 10, "resolution (7680x4320) is over the limit of 4096x4096"),
        (probe(video(0, 0)), 10, "not a video we can read"),
        (probe(video()), 2 * 10**9, "larger than the limit of 953 MB"),
        (probe(video(), container="hls"), 10, "a playlist or a format jobpulse does not accept"),
        (probe(video(), container="concat"), 10, "a playlist or a format jobpulse does not accept"),
        (probe(video(), container="rawvideo"), 10, "a playlist or a format jobpulse does not accept"),
    ],
)
def test_bad_probes_are_rejected_in_plain_words(data: dict[str, Any], size: int, reason: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_probe(data, size, LIMITS)
    assert reason in caught.value.message


def test_the_accepted_containers_are_exactly_the_demuxers_ffmpeg_names() -> None:
    """FFmpeg matches ``-format_whitelist`` name by name (``av_match_list``); so does ``is_accepted``. Of
    every demuxer this FFmpeg has, only the listed ones match: none gets in through a shared name."""
    listing = subprocess.run(
        ["ffmpeg", "-hide_banner", "-demuxers"], capture_output=True, text=True, check=True
    ).stdout
    demuxers = [line.split()[1] for line in listing.splitlines() if line.startswith(" D")]
    assert len(demuxers) > 100
    assert sorted(d for d in demuxers if is_accepted(d)) == sorted(ACCEPTED_DEMUXERS)
    for follower in ("hls", "dash", "concat", "image2", "tty", "vobsub", "mpegtsraw", "asf_o"):
        assert follower in demuxers or follower == "dash"
        assert not is_accepted(follower)


def test_movs_external_references_stay_off() -> None:
    """mov is the one accepted demuxer that can open other files (``enable_drefs``): it must default off,
    as jobpulse cannot pass ``-enable_drefs 0`` (ffmpeg refuses an option the chosen demuxer lacks)."""
    help_text = subprocess.run(
        ["ffprobe", "-hide_banner", "-h", "demuxer=mov"], capture_output=True, text=True, check=True
    ).stdout
    option = next(line for line in help_text.splitlines() if line.strip().startswith("-enable_drefs"))
    assert "(default false)" in option


@pytest.mark.parametrize(
    ("make", "filename", "reason"),
    [
        (("-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "1"), "photo.png", "still image"),
        (
            ("-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "1", "-f", "image2"),
            "p.mp4",
            "still image",
        ),
        (("-f", "lavfi", "-i", "sine=duration=1"), "song.mp3", "sound but no picture"),
        (("-f", "lavfi", "-i", "testsrc=duration=1", "-f", "rawvideo"), "raw.yuv", "does not accept"),
    ],
)
def test_a_format_off_the_whitelist_is_named_plainly(
    tmp_path: Path, make: tuple[str, ...], filename: str, reason: str
) -> None:
    path = tmp_path / filename
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *make, str(path)], check=True)
    with pytest.raises(BadInput) as caught:
        probe_video("ffprobe", path, LIMITS, timeout=10)
    assert reason in caught.value.message
    assert refused_demuxer("[hls @ 0x55d0c0ffee00] Format not on whitelist 'avi'") == "hls"
    assert refused_demuxer("moov atom not found") is None


def test_outputs_are_private_whatever_the_umask(tmp_path: Path, clip: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", secret_key="s" * 40)
    previous = os.umask(0)
    try:
        folder = fresh_media_folder(settings, "abc")
        (folder / "stale.mp4").write_bytes(b"from an earlier attempt")
        folder = fresh_media_folder(settings, "abc")
        assert list(folder.iterdir()) == []
        rendition = plan_renditions(["240p"], 320, 240)[0]
        target = folder / rendition.file_name
        run_ffmpeg(
            transcode_command("ffmpeg", clip, target, rendition, "ultrafast"),
            lambda _b: None,
            stall_seconds=30,
        )
        assert stat.S_IMODE(target.stat().st_mode) == 0o666  # what ffmpeg leaves under umask 0
        private_file(target)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == stat.S_IMODE(settings.media_dir.stat().st_mode) == 0o700


def test_the_plan_never_upscales_and_keeps_the_aspect_ratio() -> None:
    plan = plan_renditions(["720p", "360p"], 1920, 1080)
    assert [(r.name, r.width, r.height) for r in plan] == [("360p", 640, 360), ("720p", 1280, 720)]
    assert [(r.name, r.width, r.height) for r in plan_renditions(["720p", "1080p"], 1280, 720)] == [
        ("720p", 1280, 720)
    ]
    portrait = plan_renditions(["360p"], 1080, 1920)
    assert [(r.width, r.height) for r in portrait] == [(360, 640)]
    odd = plan_renditions(["360p"], 853, 481)  # odd sizes round to even ones
    assert all(r.width % 2 == 0 and r.height % 2 == 0 for r in odd)
    tiny = plan_renditions(["360p", "720p"], 320, 180)
    assert [(r.name, r.width, r.height, r.video_kbps) for r in tiny] == [("180p", 320, 180, 400)]
    assert plan[0].record(1_000_000, 8.0) == {
        "name": "360p",
        "file": "360p.mp4",
        "width": 640,
        "height": 360,
        "bitrate": 1_000_000,
        "bytes": 1_000_000,
    }


def test_options_name_known_renditions() -> None:
    assert parse_video_options(None).renditions is None
    assert parse_video_options('{"renditions": ["360p", "360p", "1080p"]}').renditions == ["360p", "1080p"]
    for raw, message in [
        ('{"renditions": []}', "'renditions'"),
        ('{"renditions": ["4k"]}', "unknown rendition '4k'"),
        ('{"size": 1}', "'size' is not a known option"),
        ("[1", "not valid JSON"),
    ]:
        with pytest.raises(InvalidOptions) as caught:
            parse_video_options(raw)
        assert message in caught.value.message
        assert caught.value.message.startswith("Invalid video options:")


def test_signed_links_open_one_path_until_they_expire() -> None:
    secret = "s" * 40
    path = "/media/videos/abc/files/360p.mp4"
    signature = url_signature(secret, path, 2000)
    check_url_signature(secret, path, "2000", signature, now=1999)
    for args, code in [
        ((path, "2000", signature, 2001), "link_expired"),
        (("/media/videos/abc/files/720p.mp4", "2000", signature, 1999), "invalid_signature"),
        ((path, "2001", signature, 1999), "invalid_signature"),
        ((path, "soon", signature, 1999), "invalid_signature"),
    ]:
        with pytest.raises(AuthenticationError) as caught:
            check_url_signature(secret, *args[:3], now=args[3])
        assert caught.value.code == code


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    subprocess.run(
        [
            *(
                "ffmpeg",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=320x240:rate=25:duration=8",
            ),
            *("-c:v", "libx264", "-preset", "ultrafast", str(path)),
        ],
        check=True,
    )
    return path


def test_the_runner_reports_progress_to_the_end(clip: Path, tmp_path: Path) -> None:
    rendition = plan_renditions(["240p"], 320, 240)[0]
    blocks: list[FFmpegProgress] = []
    last = run_ffmpeg(
        transcode_command("ffmpeg", clip, tmp_path / "out.mp4", rendition, "ultrafast"),
        lambda block: blocks.append(block) if block else None,
        stall_seconds=30,
    )
    assert last is not None and last.done and last.out_time_us > 7_000_000
    times = [block.out_time_us for block in blocks]
    assert times == sorted(times) and blocks[-1] == last
    assert (tmp_path / "out.mp4").stat().st_size > 0


def _children_named(name: str) -> list[psutil.Process]:
    return [p for p in psutil.Process(os.getpid()).children(recursive=True) if p.name() == name]


def test_a_cancel_raised_by_the_callback_kills_ffmpeg(clip: Path, tmp_path: Path) -> None:
    rendition = plan_renditions(["240p"], 320, 240)[0]
    command = transcode_command("ffmpeg", clip, tmp_path / "out.mp4", rendition, "veryslow")
    command[command.index("-i")] = "-re"  # read at real speed, so the run is slow enough to cancel
    command[command.index("-re") + 1 : command.index("-re") + 1] = ["-i"]

    def cancel(block: FFmpegProgress | None) -> None:
        assert _children_named("ffmpeg")
        if block is not None and block.out_time_us > 500_000:
            raise JobCancelled()

    started = time.monotonic()
    with pytest.raises(JobCancelled):
        run_ffmpeg(command, cancel, stall_seconds=30)
    assert time.monotonic() - started < 5
    assert _children_named("ffmpeg") == []


def test_a_stuck_ffmpeg_is_killed_and_the_job_fails(tmp_path: Path) -> None:
    fifo = tmp_path / "never-written"
    os.mkfifo(fifo)  # ffmpeg blocks opening it: no progress ever comes
    rendition = plan_renditions(["240p"], 320, 240)[0]
    ticks: list[None] = []
    started = time.monotonic()
    with pytest.raises(JobFailed) as caught:
        run_ffmpeg(
            transcode_command("ffmpeg", fifo, tmp_path / "out.mp4", rendition, "ultrafast"),
            lambda block: ticks.append(block) if block is None else None,
            stall_seconds=1.5,
        )
    assert 1.5 <= time.monotonic() - started < 5
    assert "stopped making progress" in caught.value.message
    assert len(ticks) >= 2  # the callback heard "no news" meanwhile (how a cancel is noticed then)
    assert _children_named("ffmpeg") == []


def test_an_ffmpeg_error_carries_its_words_for_the_log(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(os.urandom(4096))
    rendition = plan_renditions(["240p"], 320, 240)[0]
    command = transcode_command("ffmpeg", garbage, tmp_path / "o.mp4", rendition, "ultrafast")
    with pytest.raises(FFmpegError) as caught:
        run_ffmpeg(command, lambda _block: None, stall_seconds=9)
    assert caught.value.returncode > 0 and caught.value.stderr


def test_ffmpeg_dies_with_a_worker_killed_outright(clip: Path, tmp_path: Path) -> None:
    """SIGKILL leaves no ``finally`` to run: the parent-death signal takes ffmpeg down with the worker."""
    rendition = plan_renditions(["240p"], 320, 240)[0]
    command = transcode_command("ffmpeg", clip, tmp_path / "out.mp4", rendition, "veryslow")
    command[command.index("-i") : command.index("-i")] = ["-re"]  # slow: it is still running when killed
    script = (
        "import sys, json; from jobpulse.media.ffmpeg import run_ffmpeg; "
        "run_ffmpeg(json.loads(sys.argv[1]), lambda block: None, stall_seconds=60)"
    )
    worker = subprocess.Popen([sys.executable, "-c", script, json.dumps(command)])
    try:
        deadline = time.monotonic() + 20
        while not (found := [p for p in psutil.Process(worker.pid).children() if p.name() == "ffmpeg"]):
            assert worker.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        ffmpeg = found[0]
        worker.kill()
        worker.wait()
        ffmpeg.wait(timeout=5)  # raises if ffmpeg outlives its worker
        assert not ffmpeg.is_running()
    finally:
        if worker.poll() is None:
            worker.kill()
