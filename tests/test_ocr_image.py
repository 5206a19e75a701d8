"""Reading uploads with Pillow: the accepted formats, and every way an upload is refused, in plain words."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jobpulse.errors import BadInput
from jobpulse.ocr.image import ImageLimits, decode_image, probe_image
from tests.ocr_support import assert_plain, bomb_png, pdf_bytes, random_bytes, render_page, tiny_png

LIMITS = ImageLimits(max_pixels=50_000_000, min_side=16)


def _write(tmp_path: Path, content: bytes, name: str = "input.png") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF"])
def test_each_accepted_format_decodes_to_bgr(tmp_path: Path, fmt: str) -> None:
    path = _write(tmp_path, render_page(fmt=fmt))
    info, pixels = decode_image(path, LIMITS)
    assert (info.width, info.height) == (720, 200)
    assert info.format == {"WEBP": "WebP"}.get(fmt, fmt)
    assert pixels.shape == (200, 720, 3) and pixels.dtype == np.uint8
    assert pixels[0, 0].tolist() == [255, 255, 255] or fmt in ("JPEG", "WEBP")  # lossy formats: near white


def test_transparency_is_composed_on_white_and_16_bit_grey_is_scaled(tmp_path: Path) -> None:
    clear = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    out = io.BytesIO()
    clear.save(out, "PNG")
    _, pixels = decode_image(_write(tmp_path, out.getvalue()), LIMITS)
    assert pixels.min() == 255  # transparent black is white paper, not a black page
    deep = Image.fromarray(np.tile(np.array([0, 65535], dtype=np.uint16), (32, 16)))
    out = io.BytesIO()
    deep.save(out, "PNG")
    _, pixels = decode_image(_write(tmp_path, out.getvalue(), "deep.png"), LIMITS)
    assert (pixels.min(), pixels.max()) == (0, 255)


def test_a_bomb_is_rejected_from_its_header_without_decoding(tmp_path: Path) -> None:
    path = _write(tmp_path, bomb_png())
    started = time.perf_counter()
    with pytest.raises(BadInput) as caught:
        decode_image(path, LIMITS)
    assert time.perf_counter() - started < 1.0  # 10 gigapixels were never allocated
    assert "50 megapixels" in caught.value.message
    assert_plain(caught.value.message)


def test_pillows_own_bomb_check_follows_the_setting(tmp_path: Path) -> None:
    # 5,000 x 5,000 is 25 megapixels: over a 10-megapixel limit by 2.5x, which Pillow itself refuses.
    path = _write(tmp_path, bomb_png(5000, 5000))
    with pytest.raises(BadInput, match="10 megapixels"):
        probe_image(path, ImageLimits(max_pixels=10_000_000, min_side=16))
    assert probe_image(path, LIMITS).pixels == 25_000_000


BAD: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "empty"),
    "pdf renamed .png": (pdf_bytes(), "PDF"),
    "random bytes": (random_bytes(), "PNG, JPEG, WebP or TIFF"),
    "1x1": (tiny_png(), "too small"),
    "truncated png": (render_page()[:1500], "damaged"),
    "gif": (b"GIF89a" + bytes(200), "GIF"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_unacceptable_files_are_bad_input_with_a_plain_reason(tmp_path: Path, case: str) -> None:
    content, expected = BAD[case]
    with pytest.raises(BadInput) as caught:
        decode_image(_write(tmp_path, content), LIMITS)
    assert expected in caught.value.message
    assert_plain(caught.value.message, str(tmp_path))
