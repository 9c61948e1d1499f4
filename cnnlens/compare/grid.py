"""The side-by-side figure: one row per image, the image then one overlay per method."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from cnnlens import render

if TYPE_CHECKING:
    from cnnlens.compare.engine import Comparison

_CLIP_PERCENTILE = 99.5


def unit_maps(maps: Sequence[np.ndarray], shared_scale: bool) -> list[np.ndarray]:
    """(H, W) maps in [0, 1]: each by its own robust maximum, or all by one shared maximum.

    Non-negative maps go 0 -> 0; signed maps centre 0 at 0.5 (as `render.normalize_map`).
    """
    flat = [np.nan_to_num(render.to_2d(m).astype(np.float64)) for m in maps]
    if not shared_scale:
        return [render.normalize_map(m, _CLIP_PERCENTILE) for m in flat]
    top = max((float(np.percentile(np.abs(m), _CLIP_PERCENTILE)) for m in flat), default=0.0)
    top = top or max((float(np.abs(m).max()) for m in flat), default=0.0) or 1.0
    return [
        np.clip(m / top, 0, 1) if m.min() >= 0 else np.clip(0.5 + m / (2 * top), 0, 1) for m in flat
    ]


def comparison_grid(
    comparison: Comparison, shared_scale: bool = False, tile_size: int = 224, alpha: float = 0.5
) -> Image.Image:
    """Rows of [image (target label), overlay per method]: the model's view of each image, shown
    at the photo's own aspect."""
    tiles: list[Image.Image] = []
    titles: list[str] = []
    aspects: list[float] = []
    all_maps = [item.maps[m] for item in comparison.images for m in comparison.methods]
    units = iter(unit_maps(all_maps, shared_scale))
    for item in comparison.images:
        height, width = next(iter(item.maps.values())).shape[-2:]
        base = item.image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
        pixels = np.asarray(base, dtype=np.float32)
        tiles.append(base)
        titles.append(f"{item.target.label} {item.target.probability:.2f}")
        aspects += [item.width / item.height] * (1 + len(comparison.methods))  # the photo's
        for method in comparison.methods:
            heat = render.colorize(next(units)).astype(np.float32)  # (H, W, 3)
            blended = np.clip((1 - alpha) * pixels + alpha * heat + 0.5, 0, 255)
            tiles.append(Image.fromarray(blended.astype(np.uint8)))
            titles.append(method + (" (shared scale)" if shared_scale else ""))
    columns = 1 + len(comparison.methods)
    return render.grid(tiles, titles, columns=columns, tile_size=tile_size, aspects=aspects)
