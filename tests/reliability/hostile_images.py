"""Hostile image files, crafted in memory: headers claiming huge sizes, frame and scan bombs.

Nothing here is committed as a binary; every file is built from a tiny valid image whose
header fields are patched, so each one is what a decoder that trusts headers would choke on.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

HUGE = 60_000  # a side far past the decoder's limits, but within every format's fields


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def small(fmt: str, size: tuple[int, int] = (3, 2), **options: object) -> bytes:
    return encode(Image.new("RGB", size, (10, 120, 230)), fmt, **options)


def png_claiming(width: int, height: int) -> bytes:
    """An IHDR claiming width x height RGB, one tiny IDAT of zeros, IEND."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int, progressive: bool = False) -> bytes:
    """A small valid JPEG whose SOF says height x width (16-bit fields)."""
    data = bytearray(small("JPEG", (16, 16), progressive=progressive))
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at >= 0:
            struct.pack_into(">HH", data, at + 5, height, width)  # length(2) precision(1)
            return bytes(data)
    raise AssertionError("no SOF marker")


def webp_vp8x_claiming(width: int, height: int) -> bytes:
    """An extended-format WebP whose VP8X canvas is width x height, then a tiny frame."""
    frame = small("WEBP")[12:]  # the "VP8 " chunk of a valid 3x2 lossy WebP
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + frame
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_lossless_claiming(width: int, height: int) -> bytes:
    """A lossless WebP whose VP8L header says width x height (14 bits each, at most 16384)."""
    data = bytearray(small("WEBP", lossless=True))
    assert data[12:16] == b"VP8L" and data[20] == 0x2F
    (bits,) = struct.unpack_from("<I", data, 21)
    bits = (bits & ~0xFFFFFFF) | (width - 1) | ((height - 1) << 14)
    struct.pack_into("<I", data, 21, bits)
    return bytes(data)


def bmp_claiming(width: int, height: int) -> bytes:
    data = bytearray(small("BMP"))
    struct.pack_into("<ii", data, 18, width, height)  # BITMAPINFOHEADER biWidth, biHeight
    return bytes(data)


def gif_claiming(width: int, height: int) -> bytes:
    """A GIF whose logical screen is width x height."""
    data = bytearray(small("GIF"))
    struct.pack_into("<HH", data, 6, width, height)
    return bytes(data)


def gif_frame_outside_screen(left: int, top: int) -> bytes:
    """A 3x2 logical screen whose first frame sits at (left, top): Pillow grows the canvas."""
    data = bytearray(small("GIF"))
    at = data.index(b",", 13)
    struct.pack_into("<HH", data, at + 1, left, top)
    return bytes(data)


def tiff_claiming(width: int, height: int) -> bytes:
    """A small valid TIFF whose ImageWidth / ImageLength tags are patched."""
    data = bytearray(small("TIFF"))
    assert data[:4] == b"II*\x00"
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    for index in range(count):
        entry = ifd + 2 + 12 * index
        tag, kind = struct.unpack_from("<HH", data, entry)
        if tag in (256, 257):
            value = width if tag == 256 else height
            if kind == 3:  # SHORT
                struct.pack_into("<H", data, entry + 8, min(value, 65535))
            else:  # LONG
                struct.pack_into("<I", data, entry + 8, value)
    return bytes(data)


CLAIMING_HUGE = {
    "PNG": lambda: png_claiming(HUGE, HUGE),
    "JPEG": lambda: jpeg_claiming(HUGE, HUGE),
    "WEBP": lambda: webp_vp8x_claiming(16_000_000, 16_000_000),
    "WEBP-lossless": lambda: webp_lossless_claiming(16_384, 16_384),
    "BMP": lambda: bmp_claiming(HUGE, HUGE),
    "GIF": lambda: gif_claiming(HUGE, HUGE),
    "GIF-frame-extent": lambda: gif_frame_outside_screen(HUGE, HUGE),
    "TIFF": lambda: tiff_claiming(HUGE, HUGE),
}


def gif_frame_bomb(frames: int) -> bytes:
    """A 2x2 GIF with `frames` frames: the first blue, every other one red."""
    screen = b"GIF89a" + struct.pack("<HHBBB", 2, 2, 0x80, 0, 0)  # 2-colour global table
    palette = b"\x00\x00\xff" + b"\xff\x00\x00"

    def frame(colour: int) -> bytes:
        descriptor = b"," + struct.pack("<HHHHB", 0, 0, 2, 2, 0)
        # LZW, minimum code size 2: clear(4), four pixels of `colour`, end(5), 3-bit codes
        codes = [4, colour, colour, colour, colour, 5]
        bits = sum(code << (3 * index) for index, code in enumerate(codes))
        payload = bits.to_bytes((3 * len(codes) + 7) // 8, "little")
        return descriptor + b"\x02" + bytes([len(payload)]) + payload + b"\x00"

    return screen + palette + frame(0) + frame(1) * (frames - 1) + b";"


def jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, bytes) for each segment of a JPEG; a scan includes its entropy-coded data."""
    segments, position = [], 2
    while position < len(data):
        marker = data[position + 1]
        if marker == 0xD9:
            segments.append((marker, data[position : position + 2]))
            break
        (length,) = struct.unpack_from(">H", data, position + 2)
        end = position + 2 + length
        if marker == 0xDA:
            while True:
                end = data.index(b"\xff", end)
                following = data[end + 1]
                if following == 0 or 0xD0 <= following <= 0xD7:
                    end += 2
                    continue
                break
        segments.append((marker, data[position:end]))
        position = end
    return segments


def jpeg_scan_bomb(scans: int, side: int = 512) -> bytes:
    """A progressive JPEG whose first AC scan is repeated: every repeat is a full pass."""
    data = small("JPEG", (side, side), progressive=True)
    segments = jpeg_segments(data)
    tables = b"".join(body for marker, body in segments if marker not in (0xDA, 0xD9))
    sos = [body for marker, body in segments if marker == 0xDA]
    return data[:2] + tables + sos[0] + sos[1] * (scans - 1) + b"\xff\xd9"


def sixteen_bit_png(value: int = 40_000) -> bytes:
    import numpy as np

    return encode(Image.fromarray(np.full((4, 5), value, dtype=np.uint16)), "PNG")
