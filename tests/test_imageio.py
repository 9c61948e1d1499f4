"""Image decoding: allowlist, limits before decoding, EXIF orientation, every mode to RGB."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cnnlens.errors import ImageDecodeError
from cnnlens.imageio import decode_image, load_image


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"])
def test_allowed_formats_decode_to_rgb(fmt: str) -> None:
    image = Image.new("RGB", (31, 17), (200, 30, 60))
    decoded = decode_image(encode(image, fmt))
    assert decoded.mode == "RGB" and decoded.size == (31, 17)
    assert np.abs(np.asarray(decoded, dtype=int) - [200, 30, 60]).max() < 40  # lossy formats


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"", 400),
        (b"hello, this is text", 415),
        (b"%PDF-1.7\n1 0 obj", 415),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 20, 400),  # a JPEG that stops after its header
    ],
)
def test_bad_bytes_are_caller_errors(data: bytes, status: int) -> None:
    with pytest.raises(ImageDecodeError) as raised:
        decode_image(data)
    assert raised.value.status == status


def test_truncated_jpeg() -> None:
    data = encode(Image.new("RGB", (64, 64), "red"), "JPEG")
    with pytest.raises(ImageDecodeError) as raised:
        decode_image(data[: len(data) // 2])
    assert raised.value.status == 400


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_pixel_bomb_is_refused_before_decoding() -> None:
    with pytest.raises(ImageDecodeError) as raised:
        decode_image(_png_header_only(100_000, 100_000))
    assert raised.value.status == 413


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (40, 20), "white")
    image.paste((255, 0, 0), (0, 0, 10, 20))  # red strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    decoded = decode_image(encode(image, "JPEG", exif=exif.tobytes(), quality=95))
    assert decoded.size == (20, 40)
    top = np.asarray(decoded)[:5].astype(int)
    assert top[..., 0].mean() > 200 and top[..., 1].mean() < 60  # red strip is now on top


def test_modes_convert_correctly() -> None:
    sixteen = Image.fromarray(np.full((4, 4), 65535 // 2, dtype=np.uint16))
    assert np.asarray(decode_image(encode(sixteen, "PNG")))[0, 0, 0] in (127, 128)
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # pure red in CMYK
    assert tuple(np.asarray(decode_image(encode(cmyk, "TIFF")))[0, 0]) == (255, 0, 0)
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 128, 255] + [0] * 765)
    assert tuple(np.asarray(decode_image(encode(palette, "PNG")))[0, 0]) == (0, 128, 255)
    transparent = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert tuple(np.asarray(decode_image(encode(transparent, "PNG")))[0, 0]) == (255, 255, 255)


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), color) for color in ("blue", "yellow", "green")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    decoded = np.asarray(decode_image(buffer.getvalue())).astype(int)
    assert decoded[..., 2].mean() > 200 and decoded[..., 0].mean() < 50


def test_load_image_accepts_arrays_and_paths(tmp_path) -> None:  # type: ignore[no-untyped-def]
    floats = np.zeros((5, 6, 3), dtype=np.float32)
    floats[..., 1] = 1.0
    assert tuple(np.asarray(load_image(floats))[0, 0]) == (0, 255, 0)
    chw = np.zeros((3, 5, 6), dtype=np.uint8)
    assert load_image(chw).size == (6, 5)
    path = tmp_path / "x.png"
    path.write_bytes(encode(Image.new("L", (3, 2), 9), "PNG"))
    assert load_image(path).mode == "RGB"
    with pytest.raises(ImageDecodeError):
        load_image(tmp_path / "missing.png")
