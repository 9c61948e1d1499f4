"""Rendering raw maps: normalization, colormaps, heatmaps, overlays, grids and PNG bytes.

OpenCV resizes maps to the photo, looks their colours up and blends them over it (each
threaded inside OpenCV). The normalization and the colour-table bins stay numpy: the bins
must be today's to the pixel (see `colour_bins`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from cnnlens.api.png import array_png, png_bytes
from cnnlens.imageio import rgb_pixels

# Control points (position, r, g, b) of the colormaps, linearly interpolated into 256 entries.
_COLORMAP_POINTS: dict[str, list[tuple[float, int, int, int]]] = {
    "jet": [(0.0, 0, 0, 128), (0.125, 0, 0, 255), (0.375, 0, 255, 255), (0.625, 255, 255, 0),
            (0.875, 255, 0, 0), (1.0, 128, 0, 0)],
    "viridis": [(0.0, 68, 1, 84), (0.25, 59, 82, 139), (0.5, 33, 145, 140), (0.75, 94, 201, 98),
                (1.0, 253, 231, 37)],
    "inferno": [(0.0, 0, 0, 4), (0.25, 87, 16, 110), (0.5, 188, 55, 84), (0.75, 249, 142, 9),
                (1.0, 252, 255, 164)],
    "gray": [(0.0, 0, 0, 0), (1.0, 255, 255, 255)],
    "coolwarm": [(0.0, 59, 76, 192), (0.5, 221, 221, 221), (1.0, 180, 4, 38)],
}  # fmt: skip
COLORMAPS = tuple(_COLORMAP_POINTS)


def _lookup_table(name: str) -> np.ndarray:
    if name not in _COLORMAP_POINTS:
        raise ValueError(f"unknown colormap {name!r}; known: {', '.join(COLORMAPS)}")
    points = np.array(_COLORMAP_POINTS[name], dtype=np.float64)
    grid = np.linspace(0.0, 1.0, 256)
    channels = [np.interp(grid, points[:, 0], points[:, i]) for i in (1, 2, 3)]
    return np.stack(channels, axis=1).round().astype(np.uint8)  # (256, 3)


@functools.cache
def _opencv_table(name: str) -> np.ndarray:
    """The (256, 1, 3) colour table of `name` as OpenCV's applyColorMap takes it."""
    return np.ascontiguousarray(_lookup_table(name)[:, None, :])


def to_2d(raw: np.ndarray | torch.Tensor) -> np.ndarray:
    """(H, W), (1, H, W) or (3, H, W) -> (H, W) float: colour maps reduce by max |value|."""
    array = raw.detach().cpu().float().numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw)
    array = array.astype(np.float32, copy=False)
    if array.ndim == 3:
        array = array[0] if array.shape[0] == 1 else np.abs(array).max(axis=0)
    if array.ndim != 2:
        raise ValueError(f"a map must be (H, W) or (C, H, W), got {array.shape}")
    return array


def normalize_map(raw: np.ndarray | torch.Tensor, clip_percentile: float = 99.5) -> np.ndarray:
    """Raw map -> [0, 1]. Non-negative maps scale by their (clipped) maximum; signed maps by
    max |v| around 0.5, so that zero stays neutral. Non-finite values count as 0 (NaN marks
    pixels not explained: they take no part in the scale)."""
    array = to_2d(raw)
    lowest, highest = array.min(initial=0.0), array.max(initial=0.0)  # NaN and inf show here
    if not (np.isfinite(lowest) and np.isfinite(highest)):
        finite = np.isfinite(array)
        scale = array[finite]
        unit = normalize_map(scale.reshape(1, -1), clip_percentile) if scale.size else scale
        neutral = 0.5 if scale.size and scale.min() < 0 else 0.0  # where 0 lands on this scale
        result = np.full(array.shape, neutral, np.float32)
        result[finite] = unit.reshape(-1)
        return result
    if lowest >= 0:
        top = percentile(array, clip_percentile) if array.size else 0.0
        top = top if top > 0 else float(highest)
        return _scaled(array, top, 0.0) if top > 0 else np.zeros_like(array)
    magnitudes = np.abs(array)
    top = percentile(magnitudes, clip_percentile)
    top = top if top > 0 else float(magnitudes.max())
    return _scaled(array, 2 * top, 0.5) if top > 0 else np.full_like(array, 0.5)


# Values sampled (one in SAMPLE_STRIDE) to find the top of a large map before selecting in it.
SAMPLE_STRIDE = 32
_SMALL = 1 << 16


def percentile(values: np.ndarray, q: float) -> float:
    """`np.percentile(values, q)` of finite values (its "linear" method), the same float.

    numpy partitions a copy of all the values (70 ms of CPU at 12 megapixels). The two
    order statistics it interpolates between lie in the top 100 - q percent: here a strided
    sample gives a value below them, and only the values above it are partitioned (14 ms;
    `benchmarks/pixel_path.py`). Then numpy's own interpolation, step for step.
    """
    flat = np.asarray(values).reshape(-1)
    count = flat.size
    quantile = q / 100
    virtual = count * quantile + (1 + quantile * -1) - 1  # numpy's virtual index, as numpy
    below = int(np.floor(virtual))
    ranks = (count - 1, count - 1) if virtual >= count - 1 else (below, below + 1)
    low, high = _order_statistics(flat, ranks)
    gamma = float(virtual - below)
    difference = high - low
    if gamma >= 0.5:
        return float(high - difference * (1 - gamma))
    return float(low + difference * gamma)


def _order_statistics(
    flat: np.ndarray, ranks: tuple[int, int]
) -> tuple[np.floating[Any], np.floating[Any]]:
    """The values at two ranks (ascending, 0-based) of the finite values `flat`, as scalars of
    their dtype (numpy interpolates in it)."""
    count = flat.size
    needed = count - ranks[0]  # values at or above the lower rank
    if count >= _SMALL and needed <= count // 4:
        sample = flat[::SAMPLE_STRIDE]
        kept = min(sample.size - 1, 2 * needed // SAMPLE_STRIDE + 1)  # twice what is needed
        floor = np.partition(sample, sample.size - 1 - kept)[sample.size - 1 - kept]
        top = flat[flat >= floor]
        if top.size >= needed:  # the ranks are among them (else: select in all the values)
            start = count - top.size  # the rank of top's smallest value
            chosen = np.partition(top, [ranks[0] - start, ranks[1] - start])
            return chosen[ranks[0] - start], chosen[ranks[1] - start]
    chosen = np.partition(flat, list(ranks))
    return chosen[ranks[0]], chosen[ranks[1]]


def _scaled(array: np.ndarray, divisor: float, offset: float) -> np.ndarray:
    """clip(offset + array / divisor, 0, 1) in one output array (no temporaries)."""
    out: np.ndarray = np.divide(array, divisor, dtype=np.float32)
    if offset:
        out += offset
    np.clip(out, 0, 1, out=out)
    return out


def colorize(unit: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8."""
    return colour_lookup(colour_bins(unit), cmap)


def colour_bins(unit: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W) uint8: each value's entry in a colour table,
    floor(value * 255 + 0.5) in float32 steps.

    Written out in numpy, not OpenCV: its conversions round half to even, which puts a
    value whose float32 `value * 255 + 0.5` is an odd integer one bin lower (a jet colour
    up to 4 levels away): 25 pixels of a 12-megapixel map (`benchmarks/pixel_path.py`)."""
    scaled = np.asarray(unit) * 255.0
    scaled += 0.5
    # Clipped before the cast to uint8: the same bins as clipping after it.
    return np.clip(scaled, 0.0, 255.0, out=scaled).astype(np.uint8)


def map_bins(raw: np.ndarray | torch.Tensor, clip_percentile: float = 99.5) -> np.ndarray:
    """`colour_bins(normalize_map(raw))` without a second float copy of a photo-sized map:
    the normalized values (a new array, in [0, 1]) are scaled in place and need no clip."""
    scaled = normalize_map(raw, clip_percentile)
    scaled *= 255.0
    scaled += 0.5
    return scaled.astype(np.uint8)


def colour_lookup(bins: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """(H, W) `colour_bins` -> (H, W, 3) uint8 colours of `cmap` (OpenCV's table lookup)."""
    import cv2

    return np.asarray(cv2.applyColorMap(np.ascontiguousarray(bins), _opencv_table(cmap)))


def palette_heatmap(bins: np.ndarray, cmap: str = "jet") -> Image.Image:
    """(H, W) `colour_bins` -> the heatmap of `colorize` as a palette image: the same
    colours, a third of the bytes to encode (a 12-megapixel heatmap PNG: 37 instead of 139 ms)."""
    image = Image.fromarray(bins)  # "L"; putpalette makes it "P"
    image.putpalette(_lookup_table(cmap).tobytes())
    return image


def palette_png(bins: np.ndarray, cmap: str = "jet") -> bytes:
    """(H, W) `colour_bins` -> the PNG bytes of `palette_heatmap` (written from the bins)."""
    return array_png(np.ascontiguousarray(bins, dtype=np.uint8), _lookup_table(cmap).tobytes())


UNEXPLAINED_GREY = (128, 128, 128)


def mark_unexplained(colored: np.ndarray, raw: np.ndarray | torch.Tensor) -> np.ndarray:
    """(H, W, 3) uint8 colours of `raw` with its NaN pixels (not explained) in neutral grey."""
    unexplained = np.isnan(to_2d(raw))
    if unexplained.any():
        colored = colored.copy()
        colored[unexplained] = UNEXPLAINED_GREY
    return colored


def resize_map(raw: torch.Tensor | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) or (h, w) float map -> same channels at (height, width) = size, float32.

    Bilinear with pixel centres aligned (torch's `align_corners=False`), by OpenCV."""
    import cv2

    if isinstance(raw, torch.Tensor):
        raw = raw.detach().float().cpu().numpy()
    array = np.asarray(raw, dtype=np.float32)
    if tuple(array.shape[-2:]) == tuple(size):
        return array
    height, width = size
    planes = array if array.ndim == 2 else np.moveaxis(array, 0, -1)  # (h, w[, C])
    resized = cv2.resize(
        np.ascontiguousarray(planes), (width, height), interpolation=cv2.INTER_LINEAR
    )
    if array.ndim == 2:
        return np.asarray(resized)
    return np.moveaxis(resized.reshape(height, width, -1), -1, 0)  # (C, H, W)


def heatmap_image(raw: np.ndarray | torch.Tensor, cmap: str = "jet") -> Image.Image:
    """A colour-mapped heatmap of the map at its own resolution."""
    return Image.fromarray(colorize(normalize_map(raw), cmap))


def rgb_map_image(raw: np.ndarray | torch.Tensor) -> Image.Image:
    """(3, H, W) signed map (guided backprop, deconvnet) as an image: centred at gray,
    scaled by a robust spread, as in Springenberg et al.'s figures."""
    array = raw.detach().cpu().float().numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw)
    array = array.astype(np.float32)
    unexplained = np.isnan(array).any(axis=0)  # grey, as in `mark_unexplained`
    array = np.nan_to_num(array)
    seen = array[:, ~unexplained] if unexplained.any() else array
    mean = float(seen.mean()) if seen.size else 0.0
    spread = percentile(np.abs(seen - mean), 99.5) if seen.size else 1.0
    unit = np.clip(0.5 + (array - mean) / (2 * (spread or 1.0)), 0, 1)
    unit[:, unexplained] = 0.5
    return Image.fromarray((np.moveaxis(unit, 0, -1) * 255 + 0.5).astype(np.uint8))


def overlay(
    image: Image.Image | np.ndarray,
    raw: np.ndarray | torch.Tensor,
    alpha: float = 0.5,
    cmap: str = "jet",
    heat: np.ndarray | None = None,
) -> Image.Image:
    """The heatmap blended over the image, at the image's size.

    heat: the (H, W, 3) uint8 colour map of `raw` at the image's size, when the caller
    already has it (a heatmap of the same map): it is then not normalized twice.
    """
    pixels = rgb_pixels(image)
    if heat is None or heat.shape[:2] != pixels.shape[:2]:
        heat = map_colours(raw, pixels.shape[:2], cmap)
    return Image.fromarray(blend(pixels, heat, alpha))


def map_colours(
    raw: np.ndarray | torch.Tensor, size: tuple[int, int], cmap: str = "jet"
) -> np.ndarray:
    """(H, W, 3) uint8 colours of the map resized to (H, W) = size, grey where unexplained."""
    on_image = resize_map(to_2d(raw), size)
    return mark_unexplained(colorize(normalize_map(on_image), cmap), on_image)


def blend(image: Image.Image | np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8 RGB: (1 - alpha) * image + alpha * heat, rounded (OpenCV's weighted
    sum; ties round to even)."""
    import cv2

    return np.asarray(cv2.addWeighted(rgb_pixels(image), 1.0 - alpha, heat, alpha, 0.0))


def grid(
    tiles: Sequence[Image.Image],
    titles: Sequence[str] = (),
    columns: int | None = None,
    tile_size: int = 224,
    caption_height: int = 18,
    gap: int = 6,
    aspects: Sequence[float] | None = None,
) -> Image.Image:
    """Tiles side by side (rows of `columns`) with a caption each and `gap` white pixels between.

    Each tile is scaled to `tile_size` wide at its own aspect (width / height), or at
    `aspects[i]` where given (a model-resolution map shown at its photo's shape): never squashed
    into a square it did not have.
    """
    if not tiles:
        raise ValueError("a grid needs at least one tile")
    columns = columns or len(tiles)
    sizes = []
    for index, tile in enumerate(tiles):
        aspect = aspects[index] if aspects is not None else tile.width / tile.height
        sizes.append((tile_size, max(1, round(tile_size / aspect))))
    rows = [
        range(start, min(start + columns, len(tiles))) for start in range(0, len(tiles), columns)
    ]
    row_heights = [caption_height + max(sizes[i][1] for i in row) for row in rows]
    width = columns * tile_size + (columns - 1) * gap
    sheet = Image.new("RGB", (width, sum(row_heights) + gap * (len(rows) - 1)), "white")
    draw = ImageDraw.Draw(sheet)
    top = 0
    for row, height in zip(rows, row_heights, strict=True):
        for column, index in enumerate(row):
            left = column * (tile_size + gap)
            sheet.paste(
                tiles[index].convert("RGB").resize(sizes[index]), (left, top + caption_height)
            )
            if index < len(titles):
                draw.text((left + 4, top + 3), titles[index][:40], fill=(0, 0, 0))
        top += height + gap
    return sheet


def to_png(image: Image.Image | np.ndarray) -> bytes:
    """PNG bytes of an image or a uint8 array ((H, W) grey, (H, W, 3) RGB, (H, W, 4) RGBA)."""
    return array_png(image) if isinstance(image, np.ndarray) else png_bytes(image)
