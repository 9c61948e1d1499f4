"""A PNG writer for 8-bit images: palette PNGs, which OpenCV does not write, and large images
deflated on several threads (`benchmarks/png_writers.py` measures it against OpenCV's).

Every row uses the "up" filter (one vectorized subtraction) and zlib's run-length strategy at
level 1 (OpenCV's `IMWRITE_PNG_FILTER_UP` and `IMWRITE_PNG_STRATEGY_RLE` write the same
stream, on one thread). Large images are deflated in row bands on several threads, as pigz
does: each band is a raw deflate stream ended by a full flush, the last one by the final
block, so together they are one valid zlib stream. zlib releases the GIL while it compresses.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

# PNG colour types of the Pillow modes written here (others go through Pillow).
COLOR_TYPES = {"L": 0, "RGB": 2, "P": 3, "LA": 4, "RGBA": 6}
# Colour types of (H, W) and (H, W, C) arrays by C.
_ARRAY_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}
SIGNATURE = b"\x89PNG\r\n\x1a\n"
UP_FILTER = 2
LEVEL = 1
# Filtered bytes per band: below two bands' worth an image is deflated in one piece.
BAND_BYTES = 2 << 20
MAX_THREADS = 4

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def png_bytes(image: Image.Image, band_bytes: int = BAND_BYTES) -> bytes:
    """The image as PNG bytes. L, LA, RGB, RGBA and palette (P) images are written here; any
    other mode (16-bit, float; a palette with transparency) by Pillow at zlib level 1."""
    palette = _palette(image)
    if image.mode not in COLOR_TYPES or (image.mode == "P" and palette is None):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=LEVEL)
        return buffer.getvalue()
    return array_png(np.asarray(image, dtype=np.uint8), palette, band_bytes)


def array_png(
    pixels: np.ndarray, palette: bytes | None = None, band_bytes: int = BAND_BYTES
) -> bytes:
    """(H, W) grey, (H, W, 2) grey + alpha, (H, W, 3) RGB or (H, W, 4) RGBA uint8 pixels as
    PNG bytes; with `palette` (RGB triplets, PLTE) the (H, W) values are its indices."""
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    color_type = 3 if palette is not None else _ARRAY_COLOR_TYPES[channels]
    rows = pixels.reshape(height, -1)
    filtered = np.empty((height, rows.shape[1] + 1), dtype=np.uint8)
    filtered[:, 0] = UP_FILTER
    filtered[0, 1:] = rows[0]  # the row above the first one counts as zeros
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # uint8 wraps: mod 256, as PNG
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    chunks = [SIGNATURE, _chunk(b"IHDR", header)]
    if palette is not None:
        chunks.append(_chunk(b"PLTE", palette))
    chunks += [_chunk(b"IDAT", _zlib(filtered, band_bytes)), _chunk(b"IEND", b"")]
    return b"".join(chunks)


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


def workers() -> int:
    """Deflating threads: the CPUs this process may use, at most MAX_THREADS."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, usable))


def band_count(size: int, band_bytes: int = BAND_BYTES) -> int:
    """How many bands `size` filtered bytes are deflated in (1: in one piece, on the caller's
    thread: handing a smaller image to the pool costs more than it saves)."""
    return max(1, min(size // max(band_bytes, 1), workers()))


def _deflating_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(workers(), thread_name_prefix="cnnlens-png")
        return _pool


def _zlib(filtered: np.ndarray, band_bytes: int) -> bytes:
    data = filtered.reshape(-1).data
    count = band_count(len(data), band_bytes)
    if count == 1:
        compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, zlib.MAX_WBITS, 9, zlib.Z_RLE)
        return compressor.compress(data) + compressor.flush()
    row_bytes = filtered.shape[1]
    rows_per_band = -(-filtered.shape[0] // count)
    cuts = [min(band * rows_per_band, filtered.shape[0]) * row_bytes for band in range(count + 1)]
    pieces = [data[start:end] for start, end in zip(cuts, cuts[1:], strict=False) if end > start]
    last = len(pieces) - 1
    pool = _deflating_pool()
    deflated = pool.map(lambda item: _raw_deflate(item[1], item[0] == last), enumerate(pieces))
    checksum = pool.submit(zlib.adler32, data)
    # zlib header: deflate, 32 KiB window, fastest level (0x78 0x01 passes the FCHECK test)
    body = b"".join(deflated)
    return b"\x78\x01" + body + struct.pack(">I", checksum.result() & 0xFFFFFFFF)


def _raw_deflate(piece: memoryview, final: bool) -> bytes:
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS, 9, zlib.Z_RLE)
    return compressor.compress(piece) + compressor.flush(
        zlib.Z_FINISH if final else zlib.Z_FULL_FLUSH
    )


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(kind)) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)
