"""Does an explanation point at the object? Energy share inside a region, the pointing game,
and degenerate (constant or non-finite) maps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Box = tuple[float, float, float, float]  # (x0, y0, x1, y1) in image pixels, x1/y1 exclusive


def boxes_to_mask(boxes: Sequence[Box], height: int, width: int) -> np.ndarray:
    """(H, W) bool: True inside any of the boxes (clipped to the image)."""
    mask = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        left, top = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        right, bottom = min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1)))
        if right > left and bottom > top:
            mask[top:bottom, left:right] = True
    return mask


def is_degenerate(raw: np.ndarray, relative_tolerance: float = 1e-6) -> bool:
    """True for a map with NaN/inf values or no variation (max - min tiny next to max |v|)."""
    array = np.asarray(raw, dtype=np.float64)
    if array.size == 0 or not np.isfinite(array).all():
        return True
    spread = float(array.max() - array.min())
    scale = float(np.abs(array).max())
    return spread <= relative_tolerance * scale or spread == 0.0


def energy_share(saliency: np.ndarray, mask: np.ndarray) -> float | None:
    """sum(|m| inside the region) / sum(|m|) for an (H, W) map; None for an all-zero map.

    The "energy-based pointing game" of Score-CAM (Wang et al., CVPR-W 2020, Sec. 4.3), with
    |m| so that signed maps count the magnitude of their evidence.
    """
    energy = np.abs(np.nan_to_num(np.asarray(saliency, dtype=np.float64)))
    total = float(energy.sum())
    if total <= 0:
        return None
    return float(energy[mask].sum() / total)


def pointing_hit(saliency: np.ndarray, mask: np.ndarray, tolerance: int = 15) -> bool | None:
    """Pointing game (Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV
    2016): a hit when the map's maximum lies within `tolerance` pixels of the object.
    None when the map is degenerate (no single maximum to point with) or the region is empty.
    NaN pixels (not explained: a center crop's border) are ignored."""
    array = np.asarray(saliency, dtype=np.float64)
    explained = ~np.isnan(array)
    if not mask.any() or not explained.any() or is_degenerate(array[explained]):
        return None
    peak = int(np.argmax(np.where(explained, array, -np.inf)))
    y, x = (int(v) for v in np.unravel_index(peak, array.shape))
    top, left = max(0, y - tolerance), max(0, x - tolerance)
    window = mask[top : y + tolerance + 1, left : x + tolerance + 1]
    ys, xs = np.nonzero(window)
    if ys.size == 0:
        return False
    distances = (ys + top - y) ** 2 + (xs + left - x) ** 2
    return bool(distances.min() <= tolerance**2)
