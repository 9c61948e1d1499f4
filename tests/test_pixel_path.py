"""The pixel path on OpenCV gives the model the inputs it had, and renders today's outputs.

"Today's" is the path before OpenCV, written out here: Pillow's decoder for every image,
torch's bilinear resize for maps, the colour table indexed in numpy, the float blend.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import cnnlens
from cnnlens import imageio, render
from cnnlens.imageio import decode_image
from cnnlens.models import LoadedModel

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
# Uploads OpenCV decodes: (format, Pillow's save options).
OPENCV_UPLOADS: dict[str, tuple[str, dict[str, object]]] = {
    "jpeg-q90": ("JPEG", {"quality": 90}),
    "jpeg-444": ("JPEG", {"quality": 95, "subsampling": 0}),
    "jpeg-progressive": ("JPEG", {"progressive": True}),
    "webp-lossy": ("WEBP", {"quality": 80}),
    "webp-lossless": ("WEBP", {"lossless": True}),
}


def _photo(name: str) -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, name)())


def _encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _pillow_decode(data: bytes, draft: int | None = None) -> Image.Image:
    """Today's decoder: Pillow for every pixel."""
    image_format = imageio.sniff_format(data)
    return imageio._decode_with_pillow(imageio._open(data, image_format), image_format, draft)


def _decoded_by_opencv(data: bytes, draft: int | None = None) -> bool:
    image_format = imageio.sniff_format(data)
    image = imageio._open(data, image_format)
    return imageio._decode_with_opencv(data, image_format, image, draft) is not None


# --- decoding: OpenCV's pixels are Pillow's ---


@pytest.mark.parametrize("upload", sorted(OPENCV_UPLOADS))
@pytest.mark.parametrize("photo", PHOTOS)
def test_opencv_decodes_the_bytes_pillow_decodes(photo: str, upload: str) -> None:
    fmt, options = OPENCV_UPLOADS[upload]
    data = _encoded(_photo(photo), fmt, **options)
    assert _decoded_by_opencv(data)
    decoded = decode_image(data)
    assert decoded.mode == "RGB" and decoded.format == fmt
    np.testing.assert_array_equal(np.asarray(decoded), np.asarray(_pillow_decode(data)))


@pytest.mark.parametrize("draft", [64, 100, 224, 300, 1024])
def test_reduced_decoding_is_pillows_draft(draft: int) -> None:
    """IMREAD_REDUCED_COLOR_2/4/8 at the scale Pillow's draft picks, with its full size."""
    big = _photo("astronaut").resize((2000, 1500), Image.Resampling.BICUBIC)
    data = _encoded(big, "JPEG", quality=90)
    drafted, reference = decode_image(data, draft=draft), _pillow_decode(data, draft=draft)
    assert drafted.size == reference.size and drafted.info["full_size"] == (2000, 1500)
    np.testing.assert_array_equal(np.asarray(drafted), np.asarray(reference))


def test_greyscale_jpegs_decode_to_grey_rgb() -> None:
    grey = _photo("chelsea").convert("L")
    data = _encoded(grey, "JPEG", quality=90)
    assert _decoded_by_opencv(data)
    decoded = np.asarray(decode_image(data))
    np.testing.assert_array_equal(decoded, np.asarray(_pillow_decode(data)))
    assert (decoded[..., 0] == decoded[..., 2]).all()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_turns_opencvs_pixels_as_pillows(orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encoded(_photo("rocket"), "JPEG", quality=90, exif=exif.tobytes())
    assert _decoded_by_opencv(data)
    np.testing.assert_array_equal(np.asarray(decode_image(data)), np.asarray(_pillow_decode(data)))


def _animated_webp() -> bytes:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("blue", "red")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    return buffer.getvalue()


def _half_transparent(image: Image.Image) -> Image.Image:
    alpha = np.full((image.height, image.width), 255, np.uint8)
    alpha[:, : image.width // 2] = 0
    transparent = image.convert("RGBA")
    transparent.putalpha(Image.fromarray(alpha))
    return transparent


PILLOW_UPLOADS: dict[str, Callable[[], bytes]] = {
    "png": lambda: _encoded(_photo("coffee"), "PNG"),
    "cmyk-jpeg": lambda: _encoded(_photo("coffee").convert("CMYK"), "JPEG", quality=95),
    "webp-alpha": lambda: _encoded(_half_transparent(_photo("coffee")), "WEBP", lossless=True),
    "webp-animated": _animated_webp,
    "bmp": lambda: _encoded(_photo("coffee"), "BMP"),
    "gif": lambda: _encoded(_photo("coffee").convert("P"), "GIF"),
    "tiff": lambda: _encoded(_photo("coffee"), "TIFF"),
}


@pytest.mark.parametrize("upload", sorted(PILLOW_UPLOADS))
def test_what_opencv_decodes_differently_is_left_to_pillow(upload: str) -> None:
    """PNG (libpng inflates every IDAT byte past the image), alpha (composited on white),
    CMYK, animations (the first frame), BMP, GIF and TIFF: Pillow decodes, as before."""
    data = PILLOW_UPLOADS[upload]()
    assert not _decoded_by_opencv(data)
    np.testing.assert_array_equal(np.asarray(decode_image(data)), np.asarray(_pillow_decode(data)))


def test_an_image_opencv_refuses_is_decoded_by_pillow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over OpenCV's own pixel limit (lower than the caller's) or malformed for it: Pillow
    decodes it, or says why it cannot."""
    import cv2

    def refuse(*_: object) -> None:
        raise cv2.error("pixels <= CV_IO_MAX_IMAGE_PIXELS")

    data = _encoded(_photo("chelsea"), "JPEG", quality=90)
    monkeypatch.setattr(cv2, "imdecode", refuse)
    np.testing.assert_array_equal(np.asarray(decode_image(data)), np.asarray(_pillow_decode(data)))
    monkeypatch.setattr(cv2, "imdecode", lambda *_: None)
    with pytest.raises(cnnlens.CnnlensError, match="truncated"):
        decode_image(data[: len(data) // 2])


def test_the_upload_format_says_whether_it_was_lossy() -> None:
    photo = _photo("chelsea")
    assert imageio.lossy_format(decode_image(_encoded(photo, "JPEG"))) == "JPEG"
    assert imageio.lossy_format(decode_image(_encoded(photo, "WEBP", quality=80))) == "WEBP"
    for fmt, options in (("WEBP", {"lossless": True}), ("PNG", {}), ("TIFF", {})):
        assert imageio.lossy_format(decode_image(_encoded(photo, fmt, **options))) is None
    assert imageio.lossy_format(photo) is None  # not an upload


_LIMIT_PROBE = """
import io, sys
from PIL import Image
from cnnlens.service.app import create_app
from cnnlens.service.settings import Settings
assert "cv2" not in sys.modules, "imported before the service could set its limits"
create_app(Settings.model_validate({"limits": {"max_pixels": 500_000, "max_side": 4000}}))
import cv2, numpy as np
from cnnlens.imageio import decode_image, limit_opencv_decoding
assert limit_opencv_decoding(500_000, 4000) and not limit_opencv_decoding(600_000, 4000)
def jpeg(size):
    buffer = io.BytesIO(); Image.new("RGB", size, "red").save(buffer, "JPEG")
    return buffer.getvalue()
def opencv(data):
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
assert opencv(jpeg((700, 700))).shape == (700, 700, 3)
try:
    opencv(jpeg((800, 700)))
except cv2.error as error:
    assert "CV_IO_MAX_IMAGE_PIXELS" in str(error)
else:
    raise AssertionError("OpenCV decoded past its pixel limit")
assert decode_image(jpeg((800, 700)), max_pixels=600_000).size == (800, 700)  # by Pillow
print("ok")
"""


def test_opencvs_own_pixel_limit_is_the_services() -> None:
    """OpenCV reads its limits once, on import: the service sets them first (cnnlens imports
    cv2 on first use), and OpenCV refuses past them; the caller's own limit still decides."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("OPENCV_IO_")}
    done = subprocess.run(
        [sys.executable, "-c", _LIMIT_PROBE], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


# --- the model's inputs, predictions and maps are today's ---


@pytest.mark.parametrize("photo", PHOTOS)
def test_the_model_sees_what_it_saw_and_explains_it_the_same(
    default_model: LoadedModel, photo: str
) -> None:
    data = _encoded(_photo(photo), "JPEG", quality=90)
    picture, reference = decode_image(data), _pillow_decode(data)
    x, x_reference = default_model.preprocessing(picture), default_model.preprocessing(reference)
    assert torch.equal(x, x_reference)
    (new,) = cnnlens.explain(default_model, data, methods=["grad_cam"])
    (old,) = cnnlens.explain(default_model, reference, methods=["grad_cam"])
    assert new.target is not None and old.target is not None
    assert new.target.index == old.target.index and new.target.probability == old.target.probability
    np.testing.assert_array_equal(new.map, old.map)


# --- rendering: today's outputs within one intensity level ---


RESIZE_TOLERANCE = 5e-5  # of the map's range


def _torch_resize(raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    tensor = torch.from_numpy(raw).float()
    squeeze = tensor.dim() == 2
    tensor = tensor[None, None] if squeeze else tensor[None]
    resized = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0]
    return (resized[0] if squeeze else resized).numpy()


def _table_colours(unit: np.ndarray, cmap: str = "jet") -> np.ndarray:
    bins = np.clip(unit * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)
    return render._lookup_table(cmap)[bins]


def _float_blend(base: np.ndarray, heat: np.ndarray, alpha: float) -> np.ndarray:
    blended = base.astype(np.float32) * np.float32(1 - alpha) + np.float32(alpha) * heat
    return np.clip(blended + np.float32(0.5), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("shape", "size"),
    [
        ((7, 7), (300, 451)),
        ((1, 224, 224), (3000, 4000)),
        ((3, 56, 56), (37, 23)),
        ((1, 5), (9, 1)),
    ],
)
def test_maps_resize_as_torchs_bilinear(shape: tuple[int, ...], size: tuple[int, int]) -> None:
    raw = np.random.default_rng(len(shape)).standard_normal(shape).astype(np.float32)
    resized = render.resize_map(raw, size)
    expected = _torch_resize(raw, size)
    assert resized.shape == expected.shape and resized.dtype == np.float32
    # Both find each pixel's source position in float32: up to a few 1e-5 of the map's
    # range apart where the source side is hundreds of pixels long.
    np.testing.assert_allclose(resized, expected, rtol=0, atol=RESIZE_TOLERANCE * np.ptp(raw))
    assert render.resize_map(torch.from_numpy(raw), size).shape == expected.shape


@pytest.mark.parametrize("cmap", render.COLORMAPS)
def test_colours_are_the_table_lookup(cmap: str) -> None:
    unit = np.linspace(-0.1, 1.1, 301 * 7, dtype=np.float32).reshape(7, 301)
    np.testing.assert_array_equal(render.colorize(unit, cmap), _table_colours(unit, cmap))
    bins = render.colour_bins(unit)
    np.testing.assert_array_equal(render.colour_lookup(bins, cmap), _table_colours(unit, cmap))
    palette = Image.open(io.BytesIO(render.palette_png(bins, cmap)))
    assert palette.mode == "P"
    np.testing.assert_array_equal(np.asarray(palette.convert("RGB")), _table_colours(unit, cmap))


@pytest.mark.parametrize("alpha", [0.5, 0.3, 0.75])
def test_blending_is_the_float_blend_within_one_level(alpha: float) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    raw = rng.random((60, 80), dtype=np.float32)
    heat = render.colorize(render.normalize_map(raw))
    blended = np.asarray(render.overlay(Image.fromarray(base), raw, alpha=alpha))
    difference = np.abs(blended.astype(int) - _float_blend(base, heat, alpha))
    assert blended.dtype == np.uint8 and difference.max() <= 1
    assert difference.mean() < 0.5  # ties alone: OpenCV rounds them to even


def test_every_pair_of_bytes_blends_within_one_level() -> None:
    pairs = np.array(np.meshgrid(np.arange(256), np.arange(256)), dtype=np.uint8).reshape(2, -1)
    base = np.repeat(pairs[0][:, None], 3, axis=1)[None]  # (1, 65536, 3)
    heat = np.repeat(pairs[1][:, None], 3, axis=1)[None]
    blended = render.blend(base, heat)
    assert np.abs(blended.astype(int) - (base.astype(int) + heat + 1) // 2).max() <= 1


@pytest.mark.parametrize("photo", ["chelsea", "coffee"])
def test_a_photos_heatmap_and_overlay_are_todays(default_model: LoadedModel, photo: str) -> None:
    """From the same grad_cam map at the model's input size: the colour bins of the map
    resized by OpenCV are today's, but where float rounding of the two resizes puts a
    value on the other side of a bin's edge (one bin away); the overlay is today's blend
    of those colours within one level."""
    picture = _photo(photo)
    (explanation,) = cnnlens.explain(default_model, picture, methods=["grad_cam"])
    raw = (
        cnnlens.run_methods(default_model, default_model.preprocessing(picture), [("grad_cam", {})])
        .outputs["grad_cam"]
        .map[0, 0]
        .numpy()
    )
    size = (picture.height, picture.width)
    tolerance = RESIZE_TOLERANCE * np.ptp(raw)
    np.testing.assert_allclose(explanation.map, _torch_resize(raw, size), rtol=0, atol=tolerance)
    old_unit = render.normalize_map(_torch_resize(raw, size))
    old_bins = np.clip(old_unit * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)
    new_bins = render.colour_bins(render.normalize_map(explanation.map))
    scaled = old_unit * 255.0 + 0.5
    at_an_edge = np.abs(scaled - np.round(scaled)) < 255 * 2 * RESIZE_TOLERANCE
    moved = new_bins != old_bins
    assert not (moved & ~at_an_edge).any() and np.abs(new_bins.astype(int) - old_bins).max() <= 1
    assert moved.mean() < 1e-3
    heatmap = np.asarray(explanation.heatmap())
    np.testing.assert_array_equal(heatmap[~moved], render._lookup_table("jet")[old_bins][~moved])
    old_overlay = _float_blend(np.asarray(picture), render._lookup_table("jet")[old_bins], 0.5)
    overlay = np.asarray(explanation.overlay())
    assert np.abs(overlay.astype(int) - old_overlay)[~moved].max() <= 1


def test_the_decoders_array_is_reused_until_the_image_changes() -> None:
    from PIL import ImageDraw

    data = _encoded(_photo("chelsea"), "JPEG", quality=90)
    picture = decode_image(data)
    pixels = imageio.rgb_pixels(picture)
    assert imageio.rgb_pixels(picture) is pixels and not pixels.flags.writeable
    np.testing.assert_array_equal(pixels, np.asarray(picture))
    picture.paste((255, 0, 0), (0, 0, 10, 10))  # Pillow gives the image new storage first
    changed = imageio.rgb_pixels(picture)
    assert tuple(changed[0, 0]) == (255, 0, 0) and tuple(pixels[0, 0]) != (255, 0, 0)
    drawn = decode_image(data)
    ImageDraw.Draw(drawn).point((5, 5), fill=(0, 255, 0))
    assert tuple(imageio.rgb_pixels(drawn)[5, 5]) == (0, 255, 0)
    with pytest.raises(ValueError, match="readonly"):
        decode_image(data).load()[0, 0] = (1, 2, 3)  # type: ignore[index]
    assert not hasattr(picture.copy(), imageio._KEPT_PIXELS)
    png = decode_image(_encoded(_photo("chelsea"), "PNG"))  # Pillow's: a copy out of it
    np.testing.assert_array_equal(imageio.rgb_pixels(png), np.asarray(png))
