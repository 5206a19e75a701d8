"""Reading an uploaded image with Pillow: PNG, JPEG, WebP or TIFF, within a pixel limit.

The size is read from the header first, so an image over the limit (a decompression bomb: a small file
whose header claims a huge canvas) is rejected without being decoded. Pillow's own bomb check is set to the
same limit and turned into an error, as a second guard. Every failure is a :class:`BadInput` whose message
is written for the end user: no exception text, no path.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageOps, UnidentifiedImageError

from jobpulse.errors import BadInput
from jobpulse.settings import Settings

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["ACCEPTED", "ImageInfo", "ImageLimits", "decode_image", "probe_image"]

# Pillow's format name -> the name users know.
ACCEPTED = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "TIFF": "TIFF"}
_ACCEPTED_WORDS = "a PNG, JPEG, WebP or TIFF image"
# First bytes of files people upload by mistake, so the reason can name what was sent.
_SIGNATURES = {
    b"%PDF": "a PDF document",
    b"GIF8": "a GIF image",
    b"BM": "a BMP image",
    b"PK\x03\x04": "a ZIP archive (or an Office document)",
    b"\xd0\xcf\x11\xe0": "an old Office document",
}
_DAMAGED = "The image file is damaged or incomplete and cannot be read."


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """What an acceptable image is (from settings)."""

    max_pixels: int
    min_side: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageLimits:
        return cls(max_pixels=settings.ocr_max_pixels, min_side=settings.ocr_min_side_pixels)


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What the header says: the format (as users name it) and the size in pixels."""

    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def to_dict(self) -> dict[str, object]:
        return {"format": self.format, "width": self.width, "height": self.height}


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1_000_000:,.0f} megapixels" if pixels >= 1_000_000 else f"{pixels:,} pixels"


def _too_many(limits: ImageLimits, size: str = "") -> BadInput:
    return BadInput(
        f"The image{size} has more pixels than the limit of {_megapixels(limits.max_pixels)}; "
        "send a smaller scan (300 dpi is plenty for text)."
    )


def _sniffed(path: Path) -> str | None:
    """What the file plainly is when it is not an image we read, judged by its first bytes."""
    with path.open("rb") as file:
        head = file.read(8)
    for signature, what in _SIGNATURES.items():
        if head.startswith(signature):
            return what
    return None


def _open(path: Path, limits: ImageLimits) -> tuple[Image.Image, ImageInfo]:
    """Open (header only) and check format and size; the caller closes the image."""
    if path.stat().st_size == 0:
        raise BadInput("The file is empty.")
    what = _sniffed(path)
    if what is not None:
        raise BadInput(f"The file is {what}, not an image; send {_ACCEPTED_WORDS}.")
    # Pillow's bomb check reads this process-wide limit; it is the same for every job of this worker.
    Image.MAX_IMAGE_PIXELS = limits.max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path, formats=list(ACCEPTED))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many(limits) from None
    except UnidentifiedImageError:
        raise BadInput(f"The file is not {_ACCEPTED_WORDS}, or it is damaged.") from None
    except Exception:  # Pillow's parsers raise many kinds (SyntaxError, struct.error, ...) on bad headers
        raise BadInput(_DAMAGED) from None
    width, height = image.size
    info = ImageInfo(ACCEPTED.get(image.format or "", image.format or "unknown"), width, height)
    if info.pixels > limits.max_pixels:
        image.close()
        raise _too_many(limits, f" ({width:,} x {height:,})")
    if min(width, height) < limits.min_side:
        image.close()
        raise BadInput(
            f"The image is {width:,} x {height:,} pixels, too small to read; "
            f"it must be at least {limits.min_side} x {limits.min_side}."
        )
    return image, info


def probe_image(path: Path, limits: ImageLimits) -> ImageInfo:
    """Format and size from the header, after the checks that need no decoding."""
    image, info = _open(path, limits)
    image.close()
    return info


def decode_image(path: Path, limits: ImageLimits) -> tuple[ImageInfo, npt.NDArray[np.uint8]]:
    """The image as 8-bit BGR pixels (what rapidocr takes), upright per its EXIF orientation.

    Transparent pixels are composed on white (scans and screenshots are dark text on light paper); of a
    multi-page TIFF or an animated WebP, the first frame is read.
    """
    import numpy as np

    image, info = _open(path, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.seek(0)
            image.load()
            upright = ImageOps.exif_transpose(image)
            pixels = _to_rgb(upright)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many(limits) from None
    except Exception:  # truncated data, bad compression streams: the file is damaged
        raise BadInput(_DAMAGED) from None
    finally:
        image.close()
    bgr: npt.NDArray[np.uint8] = np.ascontiguousarray(pixels[:, :, ::-1])
    height, width = bgr.shape[:2]
    return ImageInfo(info.format, width, height), bgr


def _to_rgb(image: Image.Image) -> npt.NDArray[np.uint8]:
    """8-bit RGB pixels of any mode Pillow opens these formats in (16-bit and float greys scaled)."""
    import numpy as np

    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        grey = ((values - low) * scale).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    rgb: npt.NDArray[np.uint8] = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return rgb
