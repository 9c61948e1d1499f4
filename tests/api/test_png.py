"""The PNG writers, the project's and OpenCV's: every pixel comes back, the zlib stream
checks out, palettes keep their indices, and each image size goes to the writer chosen."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cnnlens.api import png
from cnnlens.api.png import png_bytes


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of each chunk, checking every CRC on the way."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        payload = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + payload) & 0xFFFFFFFF, kind
        chunks.append((kind, payload))
        offset += 12 + length
    return chunks


def _photo(mode: str, width: int, height: int) -> Image.Image:
    from skimage import data

    picture = Image.fromarray(data.astronaut()).resize((width, height))
    if mode in ("RGBA", "LA"):
        alpha = np.random.default_rng(0).integers(0, 256, (height, width), dtype=np.uint8)
        picture.putalpha(Image.fromarray(alpha))
    return picture.convert(mode)


@pytest.fixture(params=["own", "opencv"])
def writer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs with both writers: every image by the project's, or by OpenCV's."""
    monkeypatch.setattr(png, "OPENCV_FROM_BYTES", 1 << 40 if request.param == "own" else 0)
    return str(request.param)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
@pytest.mark.parametrize("size", [(1, 1), (7, 1), (1, 9), (53, 37), (300, 200)])
def test_every_pixel_comes_back(writer: str, mode: str, size: tuple[int, int]) -> None:
    picture = _photo(mode, *size)
    decoded = Image.open(io.BytesIO(png_bytes(picture)))
    assert decoded.mode == mode and decoded.size == picture.size
    np.testing.assert_array_equal(np.asarray(decoded), np.asarray(picture))


def test_both_writers_write_one_up_filtered_zlib_stream(writer: str) -> None:
    picture = _photo("RGB", 301, 211)
    data = png_bytes(picture)
    chunks = _chunks(data)
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    idat = b"".join(payload for kind, payload in chunks if kind == b"IDAT")
    raw = zlib.decompress(idat)  # checks the header and the Adler-32 trailer
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(211, 301 * 3 + 1)
    assert (rows[:, 0] == 2).all()  # the "up" filter on every row
    assert idat[0] == 0x78 and idat[1] >> 6 == 0  # zlib's fastest levels
    assert data == png_bytes(picture)  # deterministic bytes


def _header_and_rows(data: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The chunks before the first IDAT, and the inflated (filtered) rows of all IDATs."""
    chunks = _chunks(data)
    idat = b"".join(payload for kind, payload in chunks if kind == b"IDAT")
    return [chunk for chunk in chunks if chunk[0] not in (b"IDAT", b"IEND")], zlib.decompress(idat)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P"])
def test_the_two_writers_write_the_same_header_and_filtered_rows(mode: str) -> None:
    """OpenCV's deflate splits IDAT chunks its own way; what they inflate to is the same."""
    picture = _photo("RGB", 301, 211)
    palette = None
    if mode == "P":
        picture = picture.quantize(77)
        palette = bytes(picture.getpalette() or [])[: 77 * 3]
    pixels = np.asarray(picture.convert(mode) if mode != "P" else picture)
    ours, opencv = png.write_png(pixels, palette), png.opencv_png(pixels, palette)
    assert _header_and_rows(ours) == _header_and_rows(opencv)
    assert len(_header_and_rows(ours)[1]) == 211 * (301 * pixels[0, 0].size + 1)


def test_large_images_go_to_opencv(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ...]] = []
    opencv = png.opencv_png

    def counted(pixels: np.ndarray, palette: bytes | None = None) -> bytes:
        calls.append(pixels.shape)
        return opencv(pixels, palette)

    monkeypatch.setattr(png, "opencv_png", counted)
    small = np.zeros((400, 400, 3), np.uint8)  # 480 kB filtered
    large = np.zeros((1000, 1500, 3), np.uint8)  # 4.5 MB
    png.array_png(small)
    png.array_png(large)
    png.array_png(np.zeros((1000, 1500, 2), np.uint8))  # grey + alpha: OpenCV writes none
    assert calls == [(1000, 1500, 3)]


def test_no_larger_than_pillow_at_its_fastest_level() -> None:
    from cnnlens import render

    picture = _photo("RGB", 512, 512)
    blended = render.overlay(picture, np.random.default_rng(1).random((7, 7)))
    buffer = io.BytesIO()
    blended.save(buffer, format="PNG", compress_level=1)
    assert len(png_bytes(blended)) <= 1.05 * len(buffer.getvalue())


@pytest.mark.parametrize("size", [(1, 1), (7, 1), (53, 37), (300, 200)])
@pytest.mark.parametrize("entries", [2, 77, 256])
def test_palette_images_keep_their_indices_and_colours(
    writer: str, entries: int, size: tuple[int, int]
) -> None:
    rng = np.random.default_rng(entries)
    picture = Image.fromarray(rng.integers(0, entries, size[::-1], dtype=np.uint8))
    picture.putpalette(rng.integers(0, 256, entries * 3, dtype=np.uint8).tobytes())
    data = png_bytes(picture)
    chunks = _chunks(data)
    assert [kind for kind, _ in chunks[:2]] == [b"IHDR", b"PLTE"] and chunks[-1][0] == b"IEND"
    assert chunks[0][1][9] == 3 and len(chunks[1][1]) == 3 * entries  # colour type 3
    decoded = Image.open(io.BytesIO(data))
    assert decoded.mode == "P"
    np.testing.assert_array_equal(np.asarray(decoded), np.asarray(picture))
    np.testing.assert_array_equal(
        np.asarray(decoded.convert("RGB")), np.asarray(picture.convert("RGB"))
    )


def test_a_palette_with_transparency_goes_through_pillow() -> None:
    picture = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4))
    picture.putpalette(bytes(range(36)))
    picture.info["transparency"] = 0
    data = png_bytes(picture)
    assert b"tRNS" in data  # Pillow keeps the transparent index
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), np.asarray(picture))


@pytest.mark.parametrize("mode", ["1", "I;16"])
def test_other_modes_go_through_pillow(mode: str) -> None:
    values = np.random.default_rng(2).integers(0, 200, (13, 17))
    picture = Image.fromarray(values.astype(np.uint8)).convert(mode)
    decoded = Image.open(io.BytesIO(png_bytes(picture)))
    expected = np.asarray(picture.convert("I"))
    np.testing.assert_array_equal(np.asarray(decoded.convert("I")), expected)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_arrays_are_written_as_their_images(mode: str) -> None:
    picture = _photo(mode, 61, 43)
    assert png.array_png(np.asarray(picture)) == png_bytes(picture)


def test_opencv_reads_the_writers_pngs(writer: str) -> None:
    import cv2

    picture = _photo("RGB", 301, 211)
    decoded = cv2.imdecode(np.frombuffer(png_bytes(picture), np.uint8), -1)
    np.testing.assert_array_equal(decoded[..., ::-1], np.asarray(picture))
