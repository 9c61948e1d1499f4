"""PNG bytes of 8-bit images: OpenCV's writer for large images, the project's own below.

Both write the same stream: every row with the "up" filter, deflated with zlib's run-length
strategy at level 1 (a few % smaller than Pillow at its fastest level, 2-3x faster). Measured
per size (`benchmarks/pixel_path.py`, docs/guides/pixel-path.md), the project's writer, one
vectorized subtraction for the filter, takes 5-10 % less CPU time than OpenCV's (row by row
in C) from 224 to 1024 px, and the two are within 3 % of each other, either way, from about a
megapixel and a half: OpenCV writes images from 1.4 megapixels of RGB (OPENCV_FROM_BYTES).
OpenCV writes no palette PNGs: its greyscale stream of the indices takes a PLTE chunk and the
palette colour type (the bytes are the same).
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

# PNG colour types of the Pillow modes written here (others go through Pillow).
COLOR_TYPES = {"L": 0, "RGB": 2, "P": 3, "LA": 4, "RGBA": 6}
# Colour types of (H, W) and (H, W, C) arrays by C.
_ARRAY_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}
PALETTE = 3
SIGNATURE = b"\x89PNG\r\n\x1a\n"
UP_FILTER = 2
LEVEL = 1
# Filtered bytes from which OpenCV's writer is as fast (about 1.4 megapixels of RGB).
OPENCV_FROM_BYTES = 4 << 20


def png_bytes(image: Image.Image) -> bytes:
    """The image as PNG bytes. L, LA, RGB, RGBA and palette (P) images are written here; any
    other mode (16-bit, float; a palette with transparency) by Pillow at zlib level 1."""
    palette = _palette(image)
    if image.mode not in COLOR_TYPES or (image.mode == "P" and palette is None):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=LEVEL)
        return buffer.getvalue()
    return array_png(np.asarray(image, dtype=np.uint8), palette)


def array_png(pixels: np.ndarray, palette: bytes | None = None) -> bytes:
    """(H, W) grey, (H, W, 2) grey + alpha, (H, W, 3) RGB or (H, W, 4) RGBA uint8 pixels as
    PNG bytes; with `palette` (RGB triplets, PLTE) the (H, W) values are its indices. Large
    images go through OpenCV (OPENCV_FROM_BYTES), others through `write_png`."""
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if pixels.size + pixels.shape[0] >= OPENCV_FROM_BYTES and channels != 2:  # no grey + alpha
        return opencv_png(pixels, palette)
    return write_png(pixels, palette)


def write_png(pixels: np.ndarray, palette: bytes | None = None) -> bytes:
    """`array_png` by the project's writer: the filter in one numpy subtraction, one deflate."""
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    color_type = PALETTE if palette is not None else _ARRAY_COLOR_TYPES[channels]
    rows = pixels.reshape(height, -1)
    filtered = np.empty((height, rows.shape[1] + 1), dtype=np.uint8)
    filtered[:, 0] = UP_FILTER
    filtered[0, 1:] = rows[0]  # the row above the first one counts as zeros
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # uint8 wraps: mod 256, as PNG
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, zlib.MAX_WBITS, 9, zlib.Z_RLE)
    deflated = compressor.compress(filtered.reshape(-1).data) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    chunks = [SIGNATURE, _chunk(b"IHDR", header)]
    if palette is not None:
        chunks.append(_chunk(b"PLTE", palette))
    chunks += [_chunk(b"IDAT", deflated), _chunk(b"IEND", b"")]
    return b"".join(chunks)


def opencv_png(pixels: np.ndarray, palette: bytes | None = None) -> bytes:
    """`array_png` by OpenCV's writer with the same filter, strategy and level."""
    import cv2

    if pixels.ndim == 3:  # OpenCV's encoders take BGR(A)
        code = cv2.COLOR_RGB2BGR if pixels.shape[2] == 3 else cv2.COLOR_RGBA2BGRA
        pixels = cv2.cvtColor(pixels, code)
    options = [
        cv2.IMWRITE_PNG_COMPRESSION, LEVEL,
        cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
        cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP,
    ]  # fmt: skip
    written, encoded = cv2.imencode(".png", pixels, options)
    if not written:
        raise ValueError(f"OpenCV could not write a {pixels.shape} image as PNG")
    data = encoded.tobytes()
    return data if palette is None else _as_palette(data, palette)


def _as_palette(grey: bytes, palette: bytes) -> bytes:
    """A greyscale 8-bit PNG as the palette PNG of the same indices: the palette colour type
    in IHDR and a PLTE chunk after it; the other chunks as they are."""
    ihdr_end = len(SIGNATURE) + 8 + 13 + 4  # length, type, 13 bytes of header, CRC
    header = bytearray(grey[len(SIGNATURE) + 8 : len(SIGNATURE) + 8 + 13])
    if grey[len(SIGNATURE) + 4 : len(SIGNATURE) + 8] != b"IHDR" or header[8:10] != b"\x08\x00":
        raise ValueError("not an 8-bit greyscale PNG")
    header[9] = PALETTE
    return b"".join(
        [SIGNATURE, _chunk(b"IHDR", bytes(header)), _chunk(b"PLTE", palette), grey[ihdr_end:]]
    )


def _palette(image: Image.Image) -> bytes | None:
    """A P image's RGB palette as PLTE bytes (1-256 entries); None for other images, and for
    palettes this writer leaves to Pillow (other palette modes, transparency)."""
    if image.mode != "P" or "transparency" in image.info:
        return None
    if image.palette is None or image.palette.mode != "RGB":
        return None
    colours = image.getpalette() or []
    entries = min(len(colours) // 3, 256)
    return bytes(colours[: entries * 3]) if entries else None


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(kind)) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)
