"""How v1 bodies carry binary data: base64 images and base64 little-endian arrays.

PNG goes through `cnnlens.api.png` (OpenCV's writer for large images, the project's for
small ones and palettes), JPEG through OpenCV, WebP through Pillow (OpenCV's WebP encoder has
no speed setting: over 3x slower on a 12-megapixel overlay, `benchmarks/results/pixel-path`).
OpenCV is imported on first use, by the service: clients that only decode never load it.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from cnnlens.api.models import ArrayPayload
from cnnlens.api.png import array_png, png_bytes
from cnnlens.imageio import rgb_pixels

# overlay_format -> (Pillow format name, encoder options, media type).
# JPEG and WebP are lossy: a 12-megapixel overlay encodes several times faster as JPEG.
IMAGE_FORMATS: dict[str, tuple[str, dict[str, int], str]] = {
    "png": ("PNG", {}, "image/png"),
    "jpeg": ("JPEG", {"quality": 90}, "image/jpeg"),
    "webp": ("WEBP", {"quality": 85, "method": 0}, "image/webp"),
}


def image_bytes(image: Image.Image | np.ndarray, image_format: str = "png") -> bytes:
    """An image, or (H, W, 3) uint8 RGB pixels, encoded as `image_format` (png, jpeg or
    webp; see IMAGE_FORMATS)."""
    pillow_format, options, _ = IMAGE_FORMATS[image_format]
    if image_format == "png":
        return array_png(image) if isinstance(image, np.ndarray) else png_bytes(image)
    if image_format == "jpeg":
        return _opencv_jpeg(rgb_pixels(image), options["quality"])
    picture = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, format=pillow_format, **options)
    return buffer.getvalue()


def _opencv_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    import cv2

    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # OpenCV's encoders take BGR
    encoded, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not encoded:
        raise ValueError(f"OpenCV could not encode a {rgb.shape} image as JPEG")
    return data.tobytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode_png(image: Image.Image | np.ndarray, image_format: str = "png") -> str:
    """An image or (H, W, 3) RGB pixels -> base64 PNG (or `image_format`: jpeg, webp)."""
    return b64(image_bytes(image, image_format))


def decode_image(data: bytes | None) -> Image.Image | None:
    """PNG (or JPEG, WebP) bytes -> a loaded PIL image (None stays None). Palette images
    (the service's heatmaps travel as palette PNGs) come back as RGB."""
    if not data:
        return None
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB") if image.mode == "P" else image


def decode_png(encoded: str | None) -> Image.Image | None:
    """Base64 PNG (or JPEG, WebP) -> a loaded PIL image (None stays None), see decode_image."""
    return decode_image(png_payload(encoded))


def png_payload(encoded: str | None) -> bytes | None:
    """Base64 PNG -> its bytes (None stays None)."""
    return base64.b64decode(encoded) if encoded else None


def encode_array(array: np.ndarray) -> ArrayPayload:
    """{dtype, shape, data}: base64 of the little-endian, C-order bytes."""
    little = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False)
    return ArrayPayload(
        dtype=little.dtype.name, shape=list(little.shape), data=b64(little.tobytes())
    )


def decode_array(payload: ArrayPayload | None) -> np.ndarray | None:
    """An ArrayPayload -> a numpy array in native byte order."""
    if payload is None:
        return None
    dtype = np.dtype(payload.dtype).newbyteorder("<")
    flat = np.frombuffer(base64.b64decode(payload.data), dtype=dtype)
    return flat.reshape(tuple(payload.shape)).astype(dtype.newbyteorder("="), copy=True)
