"""Regions of a segmentation target: a box or a mask in input pixels -> weights per output pixel.

A segmentation model's score for class c is its logits summed over a region (see
`heads.target_scores`). The region is a box `(x0, y0, x1, y1)` (x0, y0 inclusive, x1, y1
exclusive, fractional values cover pixels partly), a mask, or by default the pixels
predicted as c.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cnnlens.errors import CnnlensError

Box = tuple[float, float, float, float]
Region = Box | Sequence[float] | torch.Tensor | np.ndarray | None


class RegionError(CnnlensError):
    """A region that is malformed, empty, outside the image, or given to a classifier."""

    code = "bad_region"
    status = 422


def check_box(box: Sequence[float], width: float, height: float) -> Box:
    """A box inside a width x height image with positive area, as four floats."""
    values = tuple(float(v) for v in box)
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise RegionError("a region box is four finite numbers x0,y0,x1,y1")
    x0, y0, x1, y1 = values
    if not (x0 < x1 and y0 < y1):
        raise RegionError(f"region {_text(values)} is empty: it needs x0 < x1 and y0 < y1")
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise RegionError(
            f"region {_text(values)} lies outside the {width:g} x {height:g} pixel image"
        )
    return x0, y0, x1, y1


def box_coverage(box: Box, size: tuple[int, int]) -> torch.Tensor:
    """(H, W) the fraction of each pixel the box covers (1 inside, 0 outside)."""
    x0, y0, x1, y1 = box
    height, width = size
    columns = (torch.arange(width) + 1.0).clamp(max=x1) - torch.arange(width).clamp(min=x0)
    rows = (torch.arange(height) + 1.0).clamp(max=y1) - torch.arange(height).clamp(min=y0)
    return rows.clamp(min=0)[:, None] * columns.clamp(min=0)[None, :]


def region_weights(
    region: Region,
    logits: torch.Tensor,
    targets: torch.Tensor,
    input_size: tuple[int, int],
) -> torch.Tensor:
    """(B, h, w) weights at the logits' resolution for each row's target.

    Args:
        region: None (the pixels predicted as each row's target), a box in input pixels,
            or a mask (H, W) or (B, H, W) at the input's resolution (bool or weights).
        logits: (B, K, h, w) the clean forward's logits.
        targets: (B,) each row's class.
        input_size: (H, W) of the model input the box and mask refer to.
    """
    batch, _, height, width = logits.shape
    if region is None:
        predicted = logits.detach().argmax(dim=1) == targets.view(-1, 1, 1)  # (B, h, w)
        empty = [int(t) for t, row in zip(targets, predicted, strict=True) if not row.any()]
        if empty:
            raise RegionError(
                f"class {empty[0]} is predicted at no pixel; give a region to explain it"
            )
        return predicted.float()
    if isinstance(region, torch.Tensor | np.ndarray):
        mask = torch.as_tensor(np.asarray(region) if isinstance(region, np.ndarray) else region)
        if mask.dim() not in (2, 3) or tuple(mask.shape[-2:]) != tuple(input_size):
            raise RegionError(
                f"a region mask must be (H, W) = {tuple(input_size)} or (B, H, W), "
                f"got {tuple(mask.shape)}"
            )
        mask = mask.detach().float().cpu()
    else:
        mask = box_coverage(check_box(region, input_size[1], input_size[0]), input_size)
    mask = mask.expand(batch, *input_size) if mask.dim() == 2 else mask
    if mask.shape[0] != batch:
        raise RegionError(f"got {mask.shape[0]} region masks for a batch of {batch}")
    if tuple(input_size) != (height, width):  # each output pixel: the share of it covered
        mask = F.adaptive_avg_pool2d(mask.unsqueeze(1), (height, width)).squeeze(1)
    if bool((mask.flatten(1).sum(dim=1) <= 0).any()):
        raise RegionError("the region is empty")
    return mask.to(logits.device)


def _text(box: Sequence[float]) -> str:
    return ",".join(f"{v:g}" for v in box)
