"""The rendition ladder, and which of its rungs a given video gets (never upscaled past its source)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["LADDER", "Rendition", "RenditionSpec", "plan_renditions"]


@dataclass(frozen=True, slots=True)
class RenditionSpec:
    """A rung of the ladder: the short side in pixels and the bitrate caps."""

    name: str
    short_side: int
    video_kbps: int
    audio_kbps: int


LADDER: dict[str, RenditionSpec] = {
    spec.name: spec
    for spec in (
        RenditionSpec("240p", 240, 400, 64),
        RenditionSpec("360p", 360, 800, 96),
        RenditionSpec("480p", 480, 1400, 128),
        RenditionSpec("720p", 720, 2800, 128),
        RenditionSpec("1080p", 1080, 5000, 160),
        RenditionSpec("1440p", 1440, 8000, 160),
        RenditionSpec("2160p", 2160, 14000, 192),
    )
}


@dataclass(frozen=True, slots=True)
class Rendition:
    """A rendition to make for one video: its output size and bitrate caps."""

    name: str
    width: int
    height: int
    video_kbps: int
    audio_kbps: int

    @property
    def file_name(self) -> str:
        return f"{self.name}.mp4"

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def record(self, size_bytes: int, duration_seconds: float) -> dict[str, Any]:
        """The rendition as the ``videos.renditions`` column keeps it (bitrate: measured, bits/s)."""
        return {
            "name": self.name,
            "file": self.file_name,
            "width": self.width,
            "height": self.height,
            "bitrate": round(size_bytes * 8 / duration_seconds) if duration_seconds > 0 else None,
            "bytes": size_bytes,
        }


def _even(value: float) -> int:
    """H.264 with 4:2:0 chroma needs even dimensions."""
    return max(2, round(value / 2) * 2)


def _scaled(spec: RenditionSpec, name: str, width: int, height: int) -> Rendition:
    short = min(width, height)
    factor = min(1.0, spec.short_side / short)
    return Rendition(name, _even(width * factor), _even(height * factor), spec.video_kbps, spec.audio_kbps)


def plan_renditions(names: tuple[str, ...] | list[str], width: int, height: int) -> list[Rendition]:
    """The renditions of ``names`` that fit a ``width`` x ``height`` source, smallest first.

    A rung is named after the short side (a portrait 1080x1920 video's 720p is 720x1280). Rungs above the
    source's short side are left out; when none fits, the video gets one rendition at its own size, named
    after it ("144p"), with the bitrate caps of the largest rung that fits it (else the smallest rung).
    """
    short = min(width, height)
    specs = sorted((LADDER[name] for name in set(names)), key=lambda spec: spec.short_side)
    fitting = [_scaled(spec, spec.name, width, height) for spec in specs if spec.short_side <= short]
    if fitting:
        return fitting
    below = [spec for spec in LADDER.values() if spec.short_side <= short]
    caps = (
        max(below, key=lambda spec: spec.short_side)
        if below
        else min(LADDER.values(), key=lambda spec: spec.short_side)
    )
    return [Rendition(f"{_even(short)}p", _even(width), _even(height), caps.video_kbps, caps.audio_kbps)]
