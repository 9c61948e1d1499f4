"""The pixel path's steps on a 12-megapixel photo: each library call against the one it
replaced or the one it was kept over, as ratios of medians measured in this process.

What stays hand-written is here with its figure: the PNG writer against OpenCV's at each
image size, the percentile against numpy's, and the colour bins against OpenCV's rounding.
Each row names the call cnnlens makes ("kept") and the other one.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from benchmarks.latency import big_jpeg, median_ms
from cnnlens import render
from cnnlens.api import png
from cnnlens.api.codecs import image_bytes
from cnnlens.imageio import decode_image

PNG_SIZES = ((64, 64), (224, 224), (512, 512), (1024, 768), (2000, 1500), (4000, 3000))


@dataclass(frozen=True)
class Step:
    """One step timed both ways: `kept` is what cnnlens calls, `other` the alternative."""

    name: str
    kept: str
    other: str
    kept_ms: float
    other_ms: float

    @property
    def speedup(self) -> float:
        """How many times faster the kept call is than the other one."""
        return self.other_ms / self.kept_ms


def _pillow_jpeg(data: bytes, draft: int | None = None) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    if draft is not None:
        image.draft("RGB", (draft, draft))
    image.load()
    return image


def _pillow_encode(pixels: np.ndarray, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _torch_resize(raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    tensor = torch.from_numpy(raw)[None, None]
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def _float_blend(base: np.ndarray, heat: np.ndarray) -> np.ndarray:
    blended = base.astype(np.float32) * np.float32(0.5) + np.float32(0.5) * heat
    return np.clip(blended + np.float32(0.5), 0, 255).astype(np.uint8)


def _grad_cam_like_map(shape: tuple[int, int]) -> np.ndarray:
    """A smooth non-negative 224 px map (a blob, as Grad-CAM gives) at `shape`."""
    rng = np.random.default_rng(0)
    coarse = np.maximum(rng.standard_normal((7, 7)).astype(np.float32), 0)
    return _torch_resize(_torch_resize(coarse, (224, 224)), shape)


def steps(repeats: int) -> list[Step]:
    """Each step of the 12-megapixel default answer, both ways."""
    data = big_jpeg()
    pixels = np.asarray(decode_image(data))
    height, width = pixels.shape[:2]
    small = _torch_resize(_grad_cam_like_map((56, 56)), (224, 224))
    full = render.resize_map(small, (height, width))
    bins = render.colour_bins(render.normalize_map(full))
    heat = render.colour_lookup(bins)
    table = render._lookup_table("jet")
    overlay = render.blend(pixels, heat)
    palette = table.tobytes()

    def timed(name: str, kept: str, other: str, *calls: Callable[[], Any]) -> Step:
        return Step(name, kept, other, *(median_ms(call, repeats) for call in calls))

    return [
        timed("12 MP JPEG to RGB pixels (what rendering reads)", "OpenCV imdecode",
              "Pillow + np.asarray",
              lambda: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB),
              lambda: np.asarray(_pillow_jpeg(data))),
        timed("12 MP JPEG to pixels and a Pillow image (the model's input)",
              "decode_image (OpenCV + Image.fromarray)", "Pillow + np.asarray",
              lambda: decode_image(data), lambda: np.asarray(_pillow_jpeg(data))),
        timed("JPEG decode at 1/8", "OpenCV IMREAD_REDUCED_COLOR_8", "Pillow draft",
              lambda: decode_image(data, draft=224), lambda: _pillow_jpeg(data, draft=224)),
        timed("224 px map -> 12 MP, bilinear", "OpenCV resize", "torch interpolate",
              lambda: render.resize_map(small, (height, width)),
              lambda: _torch_resize(small, (height, width))),
        timed("99.5th percentile of a 12 MP map", "cnnlens (top values only)", "numpy",
              lambda: render.percentile(full, 99.5), lambda: np.percentile(full, 99.5)),
        timed("jet colour table, 12 MP", "OpenCV applyColorMap", "numpy take",
              lambda: render.colour_lookup(bins), lambda: table[bins]),
        timed("blend at alpha 0.5, 12 MP", "OpenCV addWeighted", "numpy float blend",
              lambda: render.blend(pixels, heat),
              lambda: _float_blend(pixels, heat)),
        timed("JPEG encode q90, 12 MP", "OpenCV imencode", "Pillow",
              lambda: image_bytes(overlay, "jpeg"),
              lambda: _pillow_encode(overlay, "JPEG", quality=90)),
        timed("WebP encode q85, 12 MP", "Pillow (method 0)", "OpenCV imencode",
              lambda: image_bytes(overlay, "webp"),
              lambda: cv2.imencode(".webp", overlay, [cv2.IMWRITE_WEBP_QUALITY, 85])),
        timed("palette heatmap PNG, 12 MP", "OpenCV, its grey stream with a PLTE",
              "cnnlens writer", lambda: png.opencv_png(bins, palette),
              lambda: png.write_png(bins, palette)),
    ]  # fmt: skip


def png_writers(repeats: int) -> list[Step]:
    """The project's PNG writer and OpenCV's (the same filter, strategy and level) on the
    photo at each size, in CPU time (both write on one thread; wall clock on a shared
    machine moves by more than they differ): `array_png` takes the faster
    (OPENCV_FROM_BYTES)."""
    from skimage import data

    photo = Image.fromarray(data.astronaut())
    found = []
    cpu = time.process_time
    for width, height in PNG_SIZES:
        pixels = np.asarray(photo.resize((width, height), Image.Resampling.BICUBIC))
        mine = median_ms(lambda pixels=pixels: png.write_png(pixels), repeats, cpu)
        opencv = median_ms(lambda pixels=pixels: png.opencv_png(pixels), repeats, cpu)
        by_opencv = pixels.size + height >= png.OPENCV_FROM_BYTES
        kept, other = ("OpenCV", "cnnlens writer") if by_opencv else ("cnnlens writer", "OpenCV")
        kept_ms, other_ms = (opencv, mine) if by_opencv else (mine, opencv)
        name = f"PNG write, {width}x{height} RGB, CPU time"
        found.append(Step(name, kept, other, kept_ms, other_ms))
    return found


def bins_moved_by_opencv_rounding() -> tuple[int, int]:
    """(pixels, of a 12 MP map) whose colour bin OpenCV's round-half-to-even conversion of
    `unit * 255 + 0.5 - 0.5` would put one below `colour_bins`' floor: why the bins stay
    numpy."""
    unit = render.normalize_map(_grad_cam_like_map((3000, 4000)))
    scaled = unit * np.float32(255.0)
    scaled += np.float32(0.5)
    opencv = np.empty(unit.shape, np.uint8)
    cv2.convertScaleAbs(scaled, opencv, 1.0, -0.5)
    return int((opencv != render.colour_bins(unit)).sum()), unit.size
