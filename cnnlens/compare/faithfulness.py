"""Deletion and insertion curves (Petsiuk et al., "RISE", BMVC 2018, section 4.1).

Protocols (`baseline`), each one the same on every front (API, REST, CLI, client, page):
- "rise", the RISE authors' evaluation code: deletion moves pixels to zeros in normalized
  space (the normalization's mean colour); insertion starts from the image blurred by their
  11 x 11 kernel (a unit impulse smoothed by scipy's `gaussian_filter` with sigma 5, so nearly
  a box filter) with zero padding; p_t is the softmax probability of the explained class;
  the AUC is the trapezoid rule. Their schedule, 224 pixels a step at 224 x 224 (225 points),
  is `steps=224`; the default 16 steps (17 points, 3136 pixels a step) is 13x cheaper.
- "blur": both ways to / from a Gaussian blur of `blur_sigma` (+-3 sigma, reflected borders).
- "mean": both ways to / from zeros.

Ties: pixels of equal importance (the zeros of a ReLU-ed map) are ordered by a seeded random
key, `numpy.random.default_rng(seed).random(H * W)` in raster order, so no image region goes
first merely for being at the top (`importance_ranks`).

Caveat measured on efficientnet_lite0: deleting pixels scattered over the whole image (the
order of a per-pixel noise map, or of a speckled guided-backprop map) breaks the classifier
faster than deleting one region, so such maps get low deletion AUCs for reasons that have
little to do with faithfulness. Compare maps of similar spatial scale, and use
`random_map` (noise at a CAM's 7x7 scale) as the chance level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter1d
from torch import nn

from cnnlens.compare.metrics import MapLike, as_2d, curve_auc
from cnnlens.compare.options import BASELINES
from cnnlens.methods.passes import heap_rows
from cnnlens.models import heads
from cnnlens.models.hooks import hook_session

RISE_KERNEL_SIZE = 11  # the RISE authors' insertion blur: klen = 11, ksig = 5
RISE_KERNEL_SIGMA = 5.0


@dataclass
class PerturbationCurves:
    """Target-class probability as pixels are removed (deletion) or inserted (insertion);
    segmentation models: the class's mean per-pixel probability over the region."""

    fractions: list[float]  # share of pixels perturbed at each step, 0 .. 1
    deletion: list[float] | None = None
    insertion: list[float] | None = None

    @property
    def deletion_auc(self) -> float | None:
        return curve_auc(self.deletion) if self.deletion is not None else None

    @property
    def insertion_auc(self) -> float | None:
        return curve_auc(self.insertion) if self.insertion is not None else None


def separable_blur(x: torch.Tensor, kernel: torch.Tensor, padding: str = "reflect") -> torch.Tensor:
    """(B, C, H, W) convolved per channel with the outer product of the 1-D `kernel` (odd
    length) with itself; `padding` "reflect" (a kernel narrower than the image) or "zeros"."""
    radius = kernel.numel() // 2
    kernel = kernel.to(x)
    channels = x.shape[1]
    horizontal = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    vertical = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    if padding == "zeros":
        x = F.conv2d(x, horizontal, padding=(0, radius), groups=channels)
        return F.conv2d(x, vertical, padding=(radius, 0), groups=channels)
    if padding != "reflect":
        raise ValueError(f"unknown padding {padding!r}; use reflect or zeros")
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), horizontal, groups=channels)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), vertical, groups=channels)


def gaussian_blur(
    x: torch.Tensor, sigma: float = 5.0, kernel_size: int | None = None
) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with reflected borders (the "blur" baseline).

    The kernel, exp(-d^2 / 2 sigma^2) normalized, spans +-3 sigma unless `kernel_size` is
    given; it never exceeds the image.
    """
    size = kernel_size or 2 * math.ceil(3 * sigma) + 1
    radius = min(size // 2, min(x.shape[-2:]) - 1)
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    return separable_blur(x, kernel / kernel.sum(), "reflect")


@cache
def rise_kernel(size: int = RISE_KERNEL_SIZE, sigma: float = RISE_KERNEL_SIGMA) -> torch.Tensor:
    """(size,) float64: the 1-D factor of the RISE authors' blur kernel.

    Their `gkern` smooths a unit impulse at the centre of a size x size array with
    `scipy.ndimage.gaussian_filter(sigma)` (reflected borders, truncated at 4 sigma): a
    separable filter, so the 2-D kernel is the outer product of this 1-D smoothed impulse.
    """
    impulse = np.zeros(size)
    impulse[size // 2] = 1.0
    return torch.from_numpy(gaussian_filter1d(impulse, sigma))


def rise_blur(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) blurred as the RISE authors' insertion canvas: their 11 x 11, sigma 5
    kernel per channel, zero padding (`conv2d(x, gkern(11, 5), padding=5)`)."""
    return separable_blur(x, rise_kernel().to(x.dtype), "zeros")


def importance_ranks(saliency: MapLike, seed: int | None = 0) -> torch.Tensor:
    """(H, W) long: 0 for the most important pixel, N-1 for the least.

    Pixels go by decreasing value; tied values (e.g. the zeros of a ReLU-ed map) by a seeded
    random key, `numpy.random.default_rng(seed).random(N)` in raster order, i.e.
    `order = numpy.lexsort((key, -map.ravel()))`, so that no image region is perturbed first
    merely for being at the top. `seed=None`: ties in raster order.
    """
    values = as_2d(saliency)
    flat = values.ravel()
    if seed is None:
        order = np.argsort(-flat, kind="stable")
    else:
        shuffle = np.random.default_rng(seed).random(flat.size)
        order = np.lexsort((shuffle, -flat))  # last key is the primary one
    ranks = torch.empty(flat.size, dtype=torch.long)
    ranks[torch.from_numpy(order.copy())] = torch.arange(flat.size)
    return ranks.view(*values.shape)


def perturbation_counts(pixels: int, steps: int) -> list[int]:
    """Pixels perturbed at each of the steps + 1 points: round(k N / steps), k = 0..steps.

    For N = 224 x 224 and steps = 224 this is 224 k, the RISE authors' schedule (their
    `step` = 224 pixels, (N + step - 1) // step = 224 steps, 225 points).
    """
    return [round(k * pixels / steps) for k in range(steps + 1)]


def substrates(baseline: str) -> tuple[str, str]:
    """(what deleted pixels become, what insertion starts from) under a baseline:
    "zeros", "rise_blur" (the authors' 11 x 11 kernel, zero padding) or "blur" (blur_sigma)."""
    if baseline == "rise":
        return "zeros", "rise_blur"
    if baseline == "mean":
        return "zeros", "zeros"
    if baseline == "blur":
        return "blur", "blur"
    raise ValueError(f"unknown baseline {baseline!r}; use {', '.join(BASELINES)}")


def substrate_image(x: torch.Tensor, substrate: str, blur_sigma: float = 5.0) -> torch.Tensor:
    """(B, C, H, W): zeros in input space (the normalization's mean colour), the RISE
    authors' blur, or a Gaussian blur of `blur_sigma`."""
    if substrate == "zeros":
        return torch.zeros_like(x)
    if substrate == "rise_blur":
        return rise_blur(x)
    if substrate == "blur":
        return gaussian_blur(x, sigma=blur_sigma)
    raise ValueError(f"unknown substrate {substrate!r}; use zeros, rise_blur or blur")


def target_probability(
    logits: torch.Tensor, target: int, head: str = "softmax", region: torch.Tensor | None = None
) -> torch.Tensor:
    """(B,) what the curves follow: p_t under the model's head (softmax, sigmoid, binary);
    segmentation: sum_ij r_ij softmax(y_ij)_t / sum_ij r_ij, the target's per-pixel
    probability averaged over the region's weights r (h, w) at the logits' resolution."""
    if head != heads.SEGMENTATION:
        return heads.probabilities(head, logits)[:, target]
    if region is None:
        raise ValueError("a segmentation target's probability needs its region")
    pixels = logits.float().softmax(dim=1)[:, target]  # (B, h, w)
    weights = region.to(pixels)
    return (pixels * weights).sum(dim=(1, 2)) / weights.sum()


def pass_rows(module: nn.Module, x: torch.Tensor, batch_size: int) -> int:
    """Images per forward without gradients: `batch_size`, fewer on a CPU where a pass of
    heap-reusing size is faster (`passes.heap_rows`)."""
    return min(batch_size, heap_rows(module, x, gradients=False) or batch_size)


def batched_probability(
    module: nn.Module,
    inputs: torch.Tensor,
    target: int,
    rows: int,
    head: str = "softmax",
    region: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B,) `target_probability` of (B, 3, H, W) inputs, `rows` images a forward (the caller
    holds the hook session and no_grad)."""
    return torch.cat(
        [
            target_probability(module(inputs[at : at + rows]).float(), target, head, region)
            for at in range(0, len(inputs), rows)
        ]
    )


def perturbation_curves(
    model: nn.Module,
    x: torch.Tensor,
    saliency: MapLike,
    target: int,
    steps: int = 16,
    kinds: tuple[str, ...] = ("deletion", "insertion"),
    baseline: str = "rise",
    batch_size: int = 16,
    blur_sigma: float = 5.0,
    seed: int | None = 0,
    head: str = "softmax",
    region: torch.Tensor | None = None,
) -> PerturbationCurves:
    """p_t(x_k) for k = 0..steps, x_k with the top round(k N / steps) pixels of `saliency`
    switched (`perturbation_counts`, ties as `importance_ranks`).

    Petsiuk et al. 2018, section 4.1: deletion moves the most important pixels to the
    substrate first (a faithful map makes p_t fall fast: low AUC); insertion starts from the
    substrate and puts the original pixels back in that order (p_t rises fast: high AUC).
    `baseline` names the substrates (`substrates`; "rise" is the authors' protocol). Each
    curve is one batched pass over its steps + 1 images, `batch_size` at a time. p_t is
    `target_probability` under `head`; a segmentation model's `region` (h, w) is fixed from
    the clean image, so each step measures the same pixels.

    Shapes: x (1, 3, H, W) preprocessed; saliency (H, W) or (C, H, W) at the model's resolution.
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one preprocessed image (1, 3, H, W), got {tuple(x.shape)}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    deleted_to, inserted_from = substrates(baseline)
    ranks = importance_ranks(saliency, seed).to(x.device)  # (H, W)
    if tuple(ranks.shape) != tuple(x.shape[-2:]):
        raise ValueError(f"the map is {tuple(ranks.shape)}, the input {tuple(x.shape[-2:])}")
    pixels = ranks.numel()
    counts = torch.tensor(perturbation_counts(pixels, steps), device=x.device)
    curves = PerturbationCurves(fractions=(counts.float() / pixels).tolist())
    x = x.detach()
    batch_size = pass_rows(model, x, batch_size)
    for kind in kinds:
        if kind == "deletion":
            start, finish = x, substrate_image(x, deleted_to, blur_sigma)  # (1, 3, H, W)
        elif kind == "insertion":
            start, finish = substrate_image(x, inserted_from, blur_sigma), x
        else:
            raise ValueError(f"unknown curve {kind!r}; use deletion or insertion")
        probabilities: list[torch.Tensor] = []
        with hook_session(model), torch.no_grad():
            for chunk in torch.split(counts, batch_size):
                switched = (ranks.unsqueeze(0) < chunk.view(-1, 1, 1)).unsqueeze(1)  # (b,1,H,W)
                inputs = torch.where(switched, finish, start)  # (b, 3, H, W)
                logits = model(inputs).float()
                probabilities.append(target_probability(logits, target, head, region).cpu())
        setattr(curves, kind, torch.cat(probabilities).tolist())
    return curves
