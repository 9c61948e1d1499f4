"""Deletion and insertion curves (Petsiuk et al., "RISE", BMVC 2018, section 4.1).

Caveat measured on efficientnet_lite0: deleting pixels scattered over the whole image (the
order of a per-pixel noise map, or of a speckled guided-backprop map) breaks the classifier
faster than deleting one region, so such maps get low deletion AUCs for reasons that have
little to do with faithfulness. Compare maps of similar spatial scale, and use
`random_map` (noise at a CAM's 7x7 scale) as the chance level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnlens.compare.metrics import MapLike, as_2d, curve_auc
from cnnlens.methods.passes import heap_rows
from cnnlens.models import heads
from cnnlens.models.hooks import hook_session


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


def gaussian_blur(
    x: torch.Tensor, sigma: float = 5.0, kernel_size: int | None = None
) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with reflected borders (RISE's insertion start).

    The kernel spans +-3 sigma unless `kernel_size` is given; it never exceeds the image.
    """
    size = kernel_size or 2 * math.ceil(3 * sigma) + 1
    radius = min(size // 2, min(x.shape[-2:]) - 1)
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    horizontal = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    vertical = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    padded = F.pad(x, (radius, radius, 0, 0), mode="reflect")
    x = F.conv2d(padded, horizontal, groups=channels)
    padded = F.pad(x, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(padded, vertical, groups=channels)


def importance_ranks(saliency: MapLike, seed: int | None = 0) -> torch.Tensor:
    """(H, W) long: 0 for the most important pixel, N-1 for the least.

    Tied values (e.g. the zeros of a ReLU-ed map) are ordered by a seeded shuffle, not by
    position, so that no image region is deleted first merely for being at the top.
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


BASELINES = ("rise", "mean", "blur")


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


def baseline_image(x: torch.Tensor, baseline: str, blur_sigma: float = 5.0) -> torch.Tensor:
    """What perturbed pixels become: "mean" = 0 in input space (the normalization's mean
    colour), "blur" = a Gaussian-blurred copy (RISE's insertion canvas)."""
    if baseline == "mean":
        return torch.zeros_like(x)
    if baseline == "blur":
        return gaussian_blur(x, sigma=blur_sigma)
    raise ValueError(f"unknown baseline {baseline!r}; use blur or mean")


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
    """p_t(x_k) for k = 0..steps, x_k with the top ceil(k N / steps) pixels of `saliency` switched.

    Petsiuk et al. 2018, section 4.1: deletion moves the most important pixels to the baseline
    first (a faithful map makes p_t fall fast: low AUC); insertion starts from the baseline and
    puts the original pixels back in that order (p_t rises fast: high AUC). Each curve is one
    batched pass over its steps + 1 images, `batch_size` at a time. `baseline`: "mean", "blur",
    or "rise" (deletion to the mean, insertion from the blurred copy). p_t is
    `target_probability` under `head`; a segmentation model's `region` (h, w) is fixed from
    the clean image, so each step measures the same pixels.

    Shapes: x (1, 3, H, W) preprocessed; saliency (H, W) or (C, H, W) at the model's resolution.
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one preprocessed image (1, 3, H, W), got {tuple(x.shape)}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    ranks = importance_ranks(saliency, seed).to(x.device)  # (H, W)
    if tuple(ranks.shape) != tuple(x.shape[-2:]):
        raise ValueError(f"the map is {tuple(ranks.shape)}, the input {tuple(x.shape[-2:])}")
    pixels = ranks.numel()
    counts = torch.tensor([round(k * pixels / steps) for k in range(steps + 1)], device=x.device)
    curves = PerturbationCurves(fractions=(counts.float() / pixels).tolist())
    x = x.detach()
    batch_size = min(batch_size, heap_rows(model, x, gradients=False) or batch_size)
    for kind in kinds:
        # "rise": deletion to the mean colour, insertion from a blurred copy, as in the paper
        chosen = ("mean" if kind == "deletion" else "blur") if baseline == "rise" else baseline
        canvas = baseline_image(x, chosen, blur_sigma)  # (1, 3, H, W)
        if kind == "deletion":
            start, finish = x, canvas
        elif kind == "insertion":
            start, finish = canvas, x
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
