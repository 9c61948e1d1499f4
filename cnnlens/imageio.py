"""Safe image decoding: a format allowlist by magic bytes, pixel limits checked before any
pixel is decoded, EXIF orientation applied, every mode converted to 8-bit RGB."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from cnnlens.errors import ImageDecodeError

DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_SIDE = 16_384
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")

ImageSource = str | Path | bytes | Image.Image | np.ndarray


def sniff_format(data: bytes) -> str:
    """The Pillow format name from the leading bytes, or a 415 for anything not allowed."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:2] == b"BM":
        return "BMP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    raise ImageDecodeError(
        f"unsupported image format; allowed: {', '.join(ALLOWED_FORMATS)}",
        code="unsupported_media_type",
        status=415,
    )


def decode_image(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int = DEFAULT_MAX_SIDE
) -> Image.Image:
    """Bytes -> RGB image. Raises ImageDecodeError (400 / 413 / 415) for anything else."""
    if not data:
        raise ImageDecodeError("the image is empty (0 bytes)", code="empty_image")
    image_format = sniff_format(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data), formats=[image_format])
            _check_size(image.size, max_pixels, max_side)  # header only: nothing decoded yet
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)  # animated GIF / multi-page TIFF: the first frame only
            image.load()
            image = ImageOps.exif_transpose(image) or image
            return to_rgb(image)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageDecodeError(str(error), code="image_too_large", status=413) from None
    except MemoryError:
        raise ImageDecodeError(
            "the image is too large to decode", code="image_too_large", status=413
        ) from None
    except Exception as error:  # truncated or malformed data from the client
        raise ImageDecodeError(
            f"cannot decode the {image_format} image: {error}", code="corrupt_image"
        ) from None


def _check_size(size: tuple[int, int], max_pixels: int, max_side: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageDecodeError(f"the image has no pixels ({width}x{height})", code="corrupt_image")
    if width * height > max_pixels or max(width, height) > max_side:
        raise ImageDecodeError(
            f"the image is {width}x{height}; the limit is {max_pixels} pixels and "
            f"{max_side} pixels a side",
            code="image_too_large",
            status=413,
        )


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB: 16-bit scaled down, alpha composited on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        gray = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """A path, bytes, PIL image or array (H, W[, C], uint8 or float in [0, 1]) -> RGB image."""
    if isinstance(source, Image.Image):
        return to_rgb(source)
    if isinstance(source, np.ndarray):
        return _array_to_image(source)
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise ImageDecodeError(f"no such image file: {path}", code="not_found", status=404)
        return decode_image(path.read_bytes(), max_pixels=max_pixels)
    if isinstance(source, bytes | bytearray | memoryview):
        return decode_image(bytes(source), max_pixels=max_pixels)
    raise ImageDecodeError(f"cannot read an image from {type(source).__name__}")


def _array_to_image(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)  # (C, H, W) -> (H, W, C)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ImageDecodeError(f"an image array must be (H, W) or (H, W, 3|4), got {array.shape}")
    if array.dtype != np.uint8:
        scaled = array.astype(np.float64)
        if scaled.max(initial=0) <= 1.0:
            scaled = scaled * 255.0
        array = np.clip(scaled + 0.5, 0, 255).astype(np.uint8)
    return to_rgb(Image.fromarray(array))
