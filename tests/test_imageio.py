"""Image decoding: allowlist, limits before decoding, EXIF orientation, every mode to RGB."""

from __future__ import annotations

import io
import struct
import time
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from cnnlens.errors import ImageDecodeError
from cnnlens.imageio import MAX_JPEG_SCANS, count_jpeg_scans, decode_image, load_image
from tests.reliability import hostile_images as hostile


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


# --- hostile input: every check happens before the decoder does the expensive part ---


@pytest.mark.parametrize("name", sorted(hostile.CLAIMING_HUGE))
def test_headers_claiming_huge_sizes_are_refused_without_decoding(name: str) -> None:
    data = hostile.CLAIMING_HUGE[name]()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageDecodeError) as raised:
            decode_image(data)
    assert raised.value.status == 413 and raised.value.code == "image_too_large"
    assert "limit" in raised.value.message
    assert not caught  # no per-size warning text to pile up in a warning registry


@pytest.mark.parametrize(
    "data",
    [
        hostile.webp_vp8x_claiming(10_000, 10_000),  # libwebp would allocate the canvas on open
        hostile.gif_frame_outside_screen(10_000, 10_000),  # Pillow would grow the canvas
        hostile.png_claiming(10_000, 10_000),
    ],
    ids=["webp", "gif-extent", "png"],
)
def test_sizes_between_our_limit_and_pillows_are_refused_silently(data: bytes) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageDecodeError) as raised:
            decode_image(data)
    assert raised.value.status == 413
    assert not caught


def test_limits_are_the_callers() -> None:
    data = encode(Image.new("RGB", (100, 50)), "PNG")
    assert decode_image(data, max_pixels=5000).size == (100, 50)
    with pytest.raises(ImageDecodeError):
        decode_image(data, max_pixels=4999)
    with pytest.raises(ImageDecodeError):
        decode_image(data, max_side=99)


def test_one_pixel_wide_images() -> None:
    with pytest.raises(ImageDecodeError) as raised:
        decode_image(hostile.png_claiming(1, 100_000))
    assert raised.value.status == 413
    tall = np.zeros((16_384, 1), dtype=np.uint8)
    tall[-1] = 255
    decoded = np.asarray(decode_image(encode(Image.fromarray(tall), "PNG")))
    assert decoded.shape == (16_384, 1, 3) and decoded[-1, 0, 0] == 255 and decoded[0, 0, 0] == 0


def test_gif_frame_bomb_decodes_only_the_first_frame() -> None:
    data = hostile.gif_frame_bomb(200_000)  # 3 MB; counting the frames alone takes ~0.5 s
    started = time.perf_counter()
    decoded = np.asarray(decode_image(data))
    elapsed = time.perf_counter() - started
    assert decoded.shape == (2, 2, 3)
    assert tuple(decoded[0, 0]) == (0, 0, 255)  # the first frame is blue, the others red
    assert elapsed < 0.15


def test_jpeg_scans_are_counted_in_the_marker_stream() -> None:
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8))
    assert count_jpeg_scans(encode(photo, "JPEG")) == 1
    assert count_jpeg_scans(encode(photo, "JPEG", progressive=True)) == 10  # libjpeg's script
    assert count_jpeg_scans(encode(photo.convert("L"), "JPEG", progressive=True)) == 6
    # an EXIF thumbnail or any APPn payload may hold SOS bytes: they are not scans
    exif = Image.Exif()
    exif[0x010E] = "\xff\xda" * 50
    assert count_jpeg_scans(encode(photo, "JPEG", exif=exif.tobytes())) == 1
    assert count_jpeg_scans(hostile.jpeg_scan_bomb(5000, side=64)) == 5000


def test_progressive_jpeg_scan_bomb_is_refused_without_decoding() -> None:
    bomb = hostile.jpeg_scan_bomb(20_000)  # ~0.3 MB; decoding would be 20 000 full passes
    started = time.perf_counter()
    with pytest.raises(ImageDecodeError) as raised:
        decode_image(bomb)
    assert time.perf_counter() - started < 0.5
    assert raised.value.status == 400 and raised.value.code == "image_too_complex"
    assert str(MAX_JPEG_SCANS) in raised.value.message
    repeated = decode_image(hostile.jpeg_scan_bomb(MAX_JPEG_SCANS // 2))  # odd but bounded
    assert repeated.size == (512, 512)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"])
def test_truncated_files_of_every_format_are_400(fmt: str) -> None:
    photo = Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 40, 3), np.uint8))
    data = encode(photo, fmt)
    for cut in (len(data) // 3, len(data) * 2 // 3):
        with pytest.raises(ImageDecodeError) as raised:
            decode_image(data[:cut])
        assert raised.value.status == 400, (fmt, cut)


def test_png_whose_data_inflates_far_past_its_size_stops_at_the_size() -> None:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    inflates_to_100_mb = zlib.compress(b"\x00" * 100_000_000, 9)  # ~100 kB
    header = struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", inflates_to_100_mb)
    started = time.perf_counter()
    decoded = decode_image(data + chunk(b"IEND", b""))
    assert decoded.size == (64, 64) and time.perf_counter() - started < 0.5


# --- EXIF orientation: the 8 values of tag 274, checked against their definitions ---

# What a viewer does to the stored pixels (H, W, C) before display, per the EXIF spec.
EXIF_DISPLAY = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirror horizontally
    3: lambda a: a[::-1, ::-1],  # rotate 180
    4: lambda a: a[::-1],  # mirror vertically
    5: lambda a: a.transpose(1, 0, 2),  # mirror horizontally, rotate 270 CW
    6: lambda a: np.rot90(a, k=-1),  # rotate 90 CW
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # mirror horizontally, rotate 90 CW
    8: lambda a: np.rot90(a, k=1),  # rotate 270 CW
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation(orientation: int) -> None:
    stored = np.random.default_rng(orientation).integers(0, 255, (3, 5, 3), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.fromarray(stored), "PNG", exif=exif.tobytes())
    np.testing.assert_array_equal(np.asarray(decode_image(data)), EXIF_DISPLAY[orientation](stored))


@pytest.mark.parametrize("value", [0, 9, 65535])
def test_out_of_range_orientation_leaves_the_pixels_as_stored(value: int) -> None:
    stored = np.random.default_rng(3).integers(0, 255, (3, 5, 3), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = value
    data = encode(Image.fromarray(stored), "PNG", exif=exif.tobytes())
    np.testing.assert_array_equal(np.asarray(decode_image(data)), stored)


def test_malformed_exif_is_ignored_not_fatal() -> None:
    stored = np.random.default_rng(4).integers(0, 255, (3, 5, 3), np.uint8)
    data = encode(Image.fromarray(stored), "PNG", exif=b"Exif\x00\x00MM\x00*\xff\xff\xff\xff")
    np.testing.assert_array_equal(np.asarray(decode_image(data)), stored)


# --- every mode a client can send ends as 8-bit RGB with the right values ---


def _decoded_pixel(image: Image.Image, fmt: str, **options: object) -> tuple[int, ...]:
    decoded = decode_image(encode(image, fmt, **options))
    assert decoded.mode == "RGB"
    return tuple(int(v) for v in np.asarray(decoded)[0, 0])


def test_sixteen_bit_images_scale_to_eight_bits() -> None:
    assert _decoded_pixel(Image.open(io.BytesIO(hostile.sixteen_bit_png(40_000))), "PNG") == (
        (156,) * 3  # round(40000 / 65535 * 255)
    )
    big_endian = Image.frombytes("I;16B", (2, 2), np.full((2, 2), 1000, ">u2").tobytes())
    assert _decoded_pixel(big_endian, "TIFF") == (4,) * 3
    rgba64 = np.zeros((2, 2, 4), dtype=np.uint16)
    rgba64[..., 0], rgba64[..., 3] = 65535, 65535  # opaque red, 16 bits a channel
    assert decode_image(_png16_rgba(rgba64)).getpixel((0, 0)) == (255, 0, 0)


def _png16_rgba(pixels: np.ndarray) -> bytes:
    """A 16-bit RGBA PNG written by hand (Pillow writes no 16-bit colour PNGs)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    height, width, _ = pixels.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b"")


def test_float_images_with_nan_and_inf_decode_to_finite_pixels() -> None:
    values = np.array([[np.nan, np.inf], [-np.inf, 1.0]], dtype=np.float32)
    decoded = np.asarray(decode_image(encode(Image.fromarray(values, "F"), "TIFF")))
    assert decoded[..., 0].tolist() == [[0, 0], [0, 255]]


def test_cmyk_lab_bilevel_and_alpha_modes() -> None:
    cmyk_red = Image.new("CMYK", (8, 8), (0, 255, 255, 0))
    assert _decoded_pixel(cmyk_red, "JPEG", quality=100)[0] > 240
    white_lab = Image.new("LAB", (2, 2), (255, 128, 128))  # L* = 100, a* = b* = 0
    assert all(v >= 250 for v in _decoded_pixel(white_lab, "TIFF"))
    grey_lab = _decoded_pixel(Image.new("LAB", (2, 2), (128, 128, 128)), "TIFF")
    assert max(grey_lab) - min(grey_lab) <= 2 and 110 <= grey_lab[0] <= 125  # L* 50: sRGB ~119
    assert _decoded_pixel(Image.new("1", (4, 4), 1), "PNG") == (255, 255, 255)
    assert _decoded_pixel(Image.new("LA", (4, 4), (100, 255)), "PNG") == (100, 100, 100)
    half_red = _decoded_pixel(Image.new("RGBA", (4, 4), (255, 0, 0, 128)), "WEBP", lossless=True)
    assert half_red[0] == 255 and abs(half_red[1] - 127) <= 1  # composited on white
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    assert _decoded_pixel(palette, "GIF") == (0, 200, 0)
    palette.info["transparency"] = 1
    assert _decoded_pixel(palette, "PNG") == (255, 255, 255)


def test_arrays_with_nan_are_made_finite() -> None:
    values = np.full((2, 2), np.nan)
    values[0, 0] = 1.0
    assert np.asarray(load_image(values))[..., 0].tolist() == [[255, 0], [0, 0]]


@pytest.mark.parametrize(
    ("fmt", "options"),
    [("WEBP", {"lossless": True}), ("TIFF", {}), ("JPEG", {"quality": 100, "subsampling": 0})],
)
def test_orientation_is_read_in_every_format_that_carries_it(fmt: str, options: dict) -> None:
    stored = np.zeros((8, 16, 3), dtype=np.uint8)
    stored[:, :8] = (255, 0, 0)  # red on the left half, black on the right
    if fmt == "TIFF":
        options = {"tiffinfo": {0x0112: 8}}
    else:
        exif = Image.Exif()
        exif[0x0112] = 8
        options = {**options, "exif": exif.tobytes()}
    decoded = np.asarray(decode_image(encode(Image.fromarray(stored), fmt, **options)))
    expected = EXIF_DISPLAY[8](stored)  # rotated 270 CW: the red half ends at the bottom
    assert decoded.shape == expected.shape == (16, 8, 3)
    assert np.abs(decoded.astype(int) - expected).max() < 40


def test_jpeg_draft_decodes_a_12_megapixel_photo_at_a_reduced_scale() -> None:
    """A 4000 x 3000 JPEG drafted for a 224 px input decodes at 1/8 scale, and matches the
    full decode reduced to the same size."""
    from skimage import data

    big = Image.fromarray(data.astronaut()).resize((4000, 3000), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    big.save(buffer, format="JPEG", quality=90)
    payload = buffer.getvalue()
    drafted = decode_image(payload, draft=224)
    assert drafted.size == (500, 375) and drafted.info["full_size"] == (4000, 3000)
    full = decode_image(payload).resize(drafted.size, Image.Resampling.BOX)
    first = np.asarray(drafted, dtype=np.float64).ravel()
    second = np.asarray(full, dtype=np.float64).ravel()
    assert np.corrcoef(first, second)[0, 1] >= 0.99
    png = io.BytesIO()
    Image.fromarray(data.chelsea()).save(png, format="PNG")
    assert decode_image(png.getvalue(), draft=64).size == (451, 300)  # only JPEG has draft mode
