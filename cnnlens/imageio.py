"""Safe image decoding: a format allowlist by magic bytes, pixel limits checked before any
pixel is decoded, JPEG scans bounded, EXIF orientation applied, every mode to 8-bit RGB.

Pillow parses every header (the checks below run on what it reads, before any pixel is
decoded). OpenCV decodes the pixels of JPEG (RGB and greyscale) and WebP (RGB, one frame)
images, with a reduced DCT scale for `draft`: the same bytes as Pillow's decoder. Pillow
decodes everything else, and whatever OpenCV refuses: PNG (it stops inflating at the
image's size where libpng inflates every IDAT byte), GIF and TIFF frames, BMP (faster),
alpha, palettes with transparency, 16-bit, CMYK and Lab.

Hostile input this guards against: headers claiming huge sizes (checked before the decoder
allocates: WebP canvases and GIF frame extents are read from the bytes, other formats from
the header Pillow parses), progressive JPEGs with thousands of scans (each scan is a full
pass over the coefficients: counted before decoding), frame bombs (only the first frame of
a GIF / WebP / APNG / multi-page TIFF is decoded, and frames are never counted).
Everything a client can send ends as an image or an `ImageDecodeError`; no warning is ever
emitted (a per-size warning text would grow each module's warning registry without bound).
"""

from __future__ import annotations

import io
import os
import re
import struct
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from cnnlens.errors import ImageDecodeError

DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_SIDE = 16_384
# libjpeg's default progressive script has 10 scans and optimizing encoders stay well under
# 100, while every scan costs a pass over all the image's coefficients.
MAX_JPEG_SCANS = 100
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")

ImageSource = str | Path | bytes | Image.Image | np.ndarray

_EXIF_ORIENTATION = 0x0112
_TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# The next marker in JPEG entropy-coded data: 0xFF not followed by a stuffed 0x00, a restart
# marker RST0-7 or another fill byte 0xFF.
_JPEG_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JPEG_STANDALONE = {0x01, 0xD8, *range(0xD0, 0xD8)}
_JPEG_SOS, _JPEG_EOI = 0xDA, 0xD9
# Pillow modes (from the header) whose pixels OpenCV decodes, per format.
_OPENCV_MODES = {"JPEG": ("RGB", "L"), "WEBP": ("RGB",)}
_LOSSLESS = "lossless"  # info key: the upload's format keeps every pixel (PNG, lossless WebP...)
_KEPT_PIXELS = "_cnnlens_pixels"  # attribute: (pixel storage, decoded array), `_keep_pixels`


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
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    draft: int | None = None,
) -> Image.Image:
    """Bytes -> RGB image. Raises ImageDecodeError (400 / 413 / 415) for anything else.

    draft: for a JPEG, decode at the smallest DCT scale (1/2, 1/4, 1/8) that keeps both
    sides >= draft pixels: far cheaper for a model input than the full decode. The stored
    size is then in `image.info["full_size"]` (width, height, before EXIF orientation).
    The image's `format` is the upload's (see `lossy_format`).
    """
    if not data:
        raise ImageDecodeError("the image is empty (0 bytes)", code="empty_image")
    image_format = sniff_format(data)
    try:
        _check_before_open(data, image_format, max_pixels, max_side)
        image = _open(data, image_format)  # parses headers only; the first frame is current
        _check_size(image.size, max_pixels, max_side)
        decoded = _decode_with_opencv(data, image_format, image, draft)
        if decoded is None:
            decoded = _decode_with_pillow(image, image_format, draft)
        decoded.format = image_format
        decoded.info[_LOSSLESS] = image_format != "JPEG" and (
            image_format != "WEBP" or _webp_is_lossless(data)
        )
        return decoded
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


def limit_opencv_decoding(max_pixels: int, max_side: int) -> bool:
    """OpenCV's own decoder limits set to these: a second fence behind the header checks.

    OpenCV reads them from the environment once, when `cv2` is first imported (cnnlens
    imports it on first use). True when they are in effect; False when `cv2` was imported
    before with other limits (OpenCV's default is 2**30 pixels)."""
    wanted = {
        "OPENCV_IO_MAX_IMAGE_PIXELS": str(max_pixels),
        "OPENCV_IO_MAX_IMAGE_WIDTH": str(max_side),
        "OPENCV_IO_MAX_IMAGE_HEIGHT": str(max_side),
    }
    if "cv2" in sys.modules:
        return all(os.environ.get(name) == value for name, value in wanted.items())
    os.environ.update(wanted)
    return True


def lossy_format(image: Image.Image) -> str | None:
    """The lossy format an image `decode_image` read was uploaded in, "JPEG" or "WEBP";
    None for lossless uploads (PNG, lossless WebP...) and images made otherwise."""
    if image.format in ("JPEG", "WEBP") and image.info.get(_LOSSLESS) is False:
        return image.format
    return None


def _decode_with_pillow(image: Image.Image, image_format: str, draft: int | None) -> Image.Image:
    if draft is not None and image_format == "JPEG":
        full_size = image.size
        image.draft("RGB", (draft, draft))
        image.info["full_size"] = full_size
    image.load()
    return to_rgb(_apply_exif_orientation(image))


def _decode_with_opencv(
    data: bytes, image_format: str, image: Image.Image, draft: int | None
) -> Image.Image | None:
    """The pixels decoded by OpenCV where its decoder gives Pillow's bytes: JPEGs in RGB or
    greyscale, WebPs in RGB with one frame. None: Pillow decodes (other images, and those
    OpenCV refuses, over its own limits or malformed: Pillow then says why)."""
    if image.mode not in _OPENCV_MODES.get(image_format, ()) or getattr(
        image, "is_animated", False
    ):
        return None
    import cv2

    drafted = draft is not None and image_format == "JPEG"  # as Pillow: only JPEGs draft
    scale = _draft_scale(image.size, draft) if draft is not None and drafted else 1
    # IMREAD_REDUCED_GRAYSCALE_n is the 1/n scale bit alone; orientation is applied below,
    # read as for Pillow's images.
    reduced = {1: 0, 2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
               8: cv2.IMREAD_REDUCED_GRAYSCALE_8}[scale]  # fmt: skip
    flags = reduced | cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:
        return None
    if pixels is None:
        return None
    pixels = _turned(pixels, _exif_orientation(image))
    decoded = Image.fromarray(pixels)
    if drafted:
        decoded.info["full_size"] = image.size
    _keep_pixels(decoded, pixels)
    return decoded


def _keep_pixels(image: Image.Image, pixels: np.ndarray) -> None:
    """Keep the decoder's array with the image it made, for `rgb_pixels`. The image is
    marked read-only: Pillow's in-place operations (paste, ImageDraw...) then give it new
    pixel storage first, which `rgb_pixels` notices (writes through `load()` are refused)."""
    pixels.flags.writeable = False
    image.readonly = 1
    setattr(image, _KEPT_PIXELS, (image.im, pixels))


def rgb_pixels(image: Image.Image | np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of an image (an array is taken as it is): the decoder's
    own array for an image `decode_image` made with OpenCV and nothing changed since (no
    36 MB copy at 12 megapixels), else a copy out of Pillow."""
    if isinstance(image, np.ndarray):
        return image
    kept = getattr(image, _KEPT_PIXELS, None)
    if kept is not None and kept[0] is image.im:
        pixels: np.ndarray = kept[1]
        return pixels
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def _draft_scale(size: tuple[int, int], draft: int) -> int:
    """The DCT scale Pillow's JPEG draft picks: the largest of 8, 4, 2 that keeps both sides
    >= draft pixels, else 1."""
    fits = min(size[0] // draft, size[1] // draft)
    return next((scale for scale in (8, 4, 2) if fits >= scale), 1)


def _turned(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """(H, W, 3) pixels turned as EXIF orientation 2-8 says (as `_TRANSPOSE_FOR_ORIENTATION`)."""
    import cv2

    if orientation == 2:
        return cv2.flip(pixels, 1)
    if orientation == 3:
        return cv2.rotate(pixels, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(pixels, 0)
    if orientation == 5:
        return cv2.transpose(pixels)
    if orientation == 6:
        return cv2.rotate(pixels, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.rotate(cv2.transpose(pixels), cv2.ROTATE_180)
    if orientation == 8:
        return cv2.rotate(pixels, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return pixels


def _webp_is_lossless(data: bytes) -> bool:
    """A WebP whose image chunk is VP8L (lossless), not VP8 (lossy)."""
    position = 12
    while position + 8 <= len(data):
        chunk = data[position : position + 4]
        if chunk in (b"VP8L", b"VP8 "):
            return chunk == b"VP8L"
        (length,) = struct.unpack_from("<I", data, position + 4)
        position += 8 + length + (length & 1)
    return False


def fitted_size(image: Image.Image, max_side: int | None) -> tuple[int, int]:
    """(width, height) of the image scaled down (aspect kept, never up) to a longer side <=
    max_side; the image's own size without max_side."""
    width, height = image.size
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def fit_within(image: Image.Image, max_side: int) -> Image.Image:
    """The image scaled down (aspect kept, never up) so that its longer side is <= max_side."""
    size = fitted_size(image, max_side)
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)


def _open(data: bytes, image_format: str) -> Image.Image:
    """Pillow's parser for exactly this format, without `Image.open`'s bomb warning."""
    if image_format not in Image.OPEN:
        Image.init()
    factory, _ = Image.OPEN[image_format]
    image: Image.Image = factory(io.BytesIO(data), "")
    return image


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


def _check_before_open(data: bytes, image_format: str, max_pixels: int, max_side: int) -> None:
    """Limits Pillow would only see after allocating or after much work: read from the bytes."""
    if image_format == "JPEG":
        scans = count_jpeg_scans(data, stop_after=MAX_JPEG_SCANS)
        if scans > MAX_JPEG_SCANS:
            raise ImageDecodeError(
                f"the JPEG has more than {MAX_JPEG_SCANS} scans", code="image_too_complex"
            )
    elif image_format == "WEBP":
        size = _webp_canvas_size(data)
        if size is not None:
            _check_size(size, max_pixels, max_side)
    elif image_format == "GIF":
        for size in _gif_sizes(data):
            _check_size(size, max_pixels, max_side)


def count_jpeg_scans(data: bytes, stop_after: int | None = None) -> int:
    """Start-of-scan markers in a JPEG's marker stream (not those inside APPn payloads)."""
    scans, position = 0, 2  # after SOI
    while position + 1 < len(data):
        if data[position] != 0xFF:
            break  # malformed: the decoder will say so
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _JPEG_STANDALONE:
            position += 2
            continue
        if marker == _JPEG_EOI or position + 4 > len(data):
            break
        (length,) = struct.unpack_from(">H", data, position + 2)
        position += 2 + length
        if marker == _JPEG_SOS:
            scans += 1
            if stop_after is not None and scans > stop_after:
                break
            following = _JPEG_NEXT_MARKER.search(data, position)
            if following is None:
                break
            position = following.start()
    return scans


def _webp_canvas_size(data: bytes) -> tuple[int, int] | None:
    """The canvas size from the first chunk's header (the decoder allocates it on open)."""
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        (bits,) = struct.unpack_from("<I", data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _gif_sizes(data: bytes) -> list[tuple[int, int]]:
    """The logical screen and the first frame's extent (Pillow grows the image to fit it)."""
    if len(data) < 13:
        return []
    sizes = [struct.unpack_from("<HH", data, 6)]
    flags = data[10]
    position = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while position < len(data):
        block = data[position]
        if block == 0x21:  # extension: label, then sub-blocks until an empty one
            position += 2
            while position < len(data) and data[position]:
                position += data[position] + 1
            position += 1
        elif block == 0x2C and position + 9 <= len(data):  # the first image descriptor
            left, top, width, height = struct.unpack_from("<HHHH", data, position + 1)
            sizes.append((left + width, top + height))
            break
        else:
            break
    return sizes


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    """Turn the pixels as EXIF tag 274 says; unreadable EXIF leaves the image as stored."""
    transpose = _TRANSPOSE_FOR_ORIENTATION.get(_exif_orientation(image))
    return image.transpose(transpose) if transpose is not None else image


def _exif_orientation(image: Image.Image) -> int:
    """Tag 274 of the TIFF IFD or of the EXIF block's IFD0, read without Pillow's EXIF
    parser (which warns with data-dependent texts on malformed blocks)."""
    tiff_tags = getattr(image, "tag_v2", None)
    if tiff_tags is not None:  # a TIFF: its own first IFD, already parsed on open
        value = tiff_tags.get(_EXIF_ORIENTATION, 1)
        return value if isinstance(value, int) else 1
    exif = image.info.get("exif")
    if not isinstance(exif, bytes):
        return 1
    return _orientation_in_exif_block(exif.removeprefix(b"Exif\x00\x00"))


def _orientation_in_exif_block(block: bytes) -> int:
    """Tag 274 (SHORT) in IFD0 of a TIFF-structured EXIF block; 1 when absent or malformed."""
    order = {b"II": "<", b"MM": ">"}.get(block[:2])
    if order is None or len(block) < 8:
        return 1
    (ifd,) = struct.unpack_from(order + "I", block, 4)
    if ifd + 2 > len(block):
        return 1
    (entries,) = struct.unpack_from(order + "H", block, ifd)
    for index in range(min(entries, (len(block) - ifd - 2) // 12)):
        tag, kind, count = struct.unpack_from(order + "HHI", block, ifd + 2 + 12 * index)
        if tag == _EXIF_ORIENTATION and kind == 3 and count >= 1:  # SHORT, stored inline
            (value,) = struct.unpack_from(order + "H", block, ifd + 2 + 12 * index + 8)
            return int(value)
    return 1


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB: 16-bit and float scaled down, alpha composited on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        top = _white_level(image.mode, float(array.max(initial=0)))
        gray = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "LAB":
        return _lab_to_rgb(image)  # Pillow's plain convert would reinterpret the bytes
    return image.convert("RGB")


def _white_level(mode: str, brightest: float) -> float:
    """The value that maps to 255: 16-bit full scale, floats in [0, 1], else 8-bit."""
    if mode.startswith("I;16") or brightest > 255:
        return 65535.0
    if mode == "F" and brightest <= 1.0:
        return 1.0
    return 255.0


def _lab_to_rgb(image: Image.Image) -> Image.Image:
    """CIE L*a*b* (TIFF) -> sRGB through Pillow's colour management."""
    from PIL import ImageCms

    transform = ImageCms.buildTransform(
        ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"
    )
    converted = ImageCms.applyTransform(image, transform)
    assert converted is not None
    return converted


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
        scaled = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if scaled.max(initial=0) <= 1.0:
            scaled = scaled * 255.0
        array = np.clip(scaled + 0.5, 0, 255).astype(np.uint8)
    return to_rgb(Image.fromarray(array))
