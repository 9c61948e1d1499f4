"""Agreement between attribution maps, the area under a perturbation curve, and the
concentration of one map (sparseness, complexity)."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import entropy

from cnnlens import render

MapLike = np.ndarray | torch.Tensor


def as_2d(raw: MapLike) -> np.ndarray:
    """A map as (H, W) float64 with non-finite values as 0 (colour maps: max |value|)."""
    return np.nan_to_num(render.to_2d(raw).astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def rankdata(values: np.ndarray) -> np.ndarray:
    """1-based ranks of a flat array; tied values share their average rank."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(flat, kind="mergesort")
    ordered = flat[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1], True])  # group bounds
    group_rank = (starts[:-1] + starts[1:] - 1) / 2.0 + 1.0  # mean of ranks start+1..end
    ranks = np.empty(flat.size, dtype=np.float64)
    ranks[order] = np.repeat(group_rank, np.diff(starts))
    return ranks


def spearman(first: MapLike, second: MapLike) -> float:
    """Spearman rank correlation rho = Pearson(rank(a), rank(b)) over all pixels.

    NaN when either map is constant (no ranking to compare).
    """
    a, b = as_2d(first).ravel(), as_2d(second).ravel()
    if a.shape != b.shape:
        raise ValueError(f"maps differ in size: {a.size} vs {b.size} pixels")
    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / denominator if denominator > 0 else math.nan


def top_k_mask(raw: MapLike, fraction: float) -> np.ndarray:
    """(H*W,) bool: the ceil(fraction * N) highest pixels (ties broken by position)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    flat = as_2d(raw).ravel()
    k = max(1, math.ceil(fraction * flat.size))
    mask = np.zeros(flat.size, dtype=bool)
    mask[np.argsort(-flat, kind="stable")[:k]] = True
    return mask


def top_k_iou(first: MapLike, second: MapLike, fraction: float = 0.1) -> float:
    """|T_a ∩ T_b| / |T_a ∪ T_b| where T is a map's top-k% pixels."""
    a, b = top_k_mask(first, fraction), top_k_mask(second, fraction)
    if a.shape != b.shape:
        raise ValueError(f"maps differ in size: {a.size} vs {b.size} pixels")
    return float((a & b).sum()) / float((a | b).sum())


def ssim(first: MapLike, second: MapLike, window_sigma: float = 1.5) -> float:
    """Mean structural similarity (Wang et al. 2004) of two maps scaled to [0, 1] by max |value|.

    SSIM = mean over Gaussian windows of (2 mu_a mu_b + C1)(2 s_ab + C2) /
    ((mu_a^2 + mu_b^2 + C1)(s_a^2 + s_b^2 + C2)), C1 = 0.01^2, C2 = 0.03^2 (dynamic range 1),
    as Adebayo et al. 2018 use it on normalized maps.
    """
    from cnnlens.compare.faithfulness import gaussian_blur

    a, b = (np.abs(as_2d(value)) for value in (first, second))
    if a.shape != b.shape:
        raise ValueError(f"maps differ in size: {a.shape} vs {b.shape}")
    a = a / a.max() if a.max() > 0 else a
    b = b / b.max() if b.max() > 0 else b
    stacked = torch.from_numpy(np.stack([a, b, a * a, b * b, a * b])[None])  # (1, 5, H, W)
    mean_a, mean_b, mean_aa, mean_bb, mean_ab = gaussian_blur(stacked, window_sigma, 11)[0]
    var_a, var_b = mean_aa - mean_a**2, mean_bb - mean_b**2
    covariance = mean_ab - mean_a * mean_b
    c1, c2 = 0.01**2, 0.03**2
    index = ((2 * mean_a * mean_b + c1) * (2 * covariance + c2)) / (
        (mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2)
    )
    return float(index.mean())


def curve_auc(values: np.ndarray | list[float]) -> float:
    """Trapezoidal area under y sampled at evenly spaced x in [0, 1] (Petsiuk et al. 2018)."""
    y = np.asarray(values, dtype=np.float64)
    if y.size < 2:
        raise ValueError("a curve needs at least two points")
    return float((y.sum() - (y[0] + y[-1]) / 2.0) / (y.size - 1))


def sparseness(raw: MapLike) -> float:
    """The Gini index of |map| (Chalasani et al., ICML 2020; Quantus's Sparseness): higher is
    sparser, 0 for a flat map, (N - 1) / N for a single pixel.

    G = sum_i (2i - N - 1) a_(i) / (N sum_i a_i), a_(1) <= ... <= a_(N) the sorted |values| of
    the 2-D map (colour maps: max |value| over channels). NaN for an all-zero map.
    """
    values = np.sort(np.abs(as_2d(raw)).ravel())
    total, n = float(values.sum()), values.size
    if total <= 0:
        return math.nan
    weights = 2 * np.arange(1, n + 1, dtype=np.float64) - n - 1
    return float(weights @ values) / (n * total)


def complexity(raw: MapLike) -> float:
    """The entropy of the map's fractional contribution (Bhatt et al., IJCAI 2020; Quantus's
    Complexity): lower is simpler, 0 for one pixel, ln N for a flat map.

    C = -sum_i P_i ln P_i with P_i = |a_i| / sum_j |a_j| over the pixels of the 2-D map
    (colour maps: max |value| over channels), 0 ln 0 = 0. NaN for an all-zero map.
    """
    values = np.abs(as_2d(raw)).ravel()
    if values.sum() <= 0:
        return math.nan
    return float(entropy(values))  # scipy normalizes to P and uses the natural log
