"""Layers that output several maps at once, such as a feature pyramid's levels, read as one.

A detector's backbone returns a dict of (B, C_l, h_l, w_l) maps, one per pyramid level
(torchvision's `BackboneWithFPN`: "0", "1", ..., "pool"). A layer method needs one
(B, C, h, w) tensor: the levels are brought to the coarsest level's grid and stacked along
channels, as pytorch-grad-cam's `fasterrcnn_reshape_transform` does for its Faster R-CNN
tutorial,

    A = concat_l  resize_bilinear(|A_l|, (h, w) of the coarsest level)      (B, sum_l C_l, h, w)

and the gradients at the layer go through the same transform, level by level. Grad-CAM
and the other CAMs then weight A's channels as for any layer: every level contributes, and
the map has the coarsest level's resolution before its upsampling to the input. Levels of
fewer than MIN_SIDE positions a side do not set the grid (they are resized up to it): SSD's
last levels are 3 x 3 down to 1 x 1, and a 1 x 1 grid would make every map constant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

import torch
import torch.nn.functional as F

Levels = Mapping[str, torch.Tensor]


def is_levels(output: Any) -> TypeGuard[Levels]:
    """Whether a layer's output is a non-empty dict of (B, C, h, w) maps of one batch."""
    if not isinstance(output, Mapping) or not output:
        return False
    values = list(output.values())
    if not all(isinstance(value, torch.Tensor) and value.dim() == 4 for value in values):
        return False
    return len({value.shape[0] for value in values}) == 1


MIN_SIDE = 4  # positions a side of the coarsest grid the levels are stacked on


def coarsest_size(levels: Levels) -> tuple[int, int]:
    """(h, w) of the level with the fewest positions among those with at least MIN_SIDE a
    side (of the largest level when none has)."""
    sizes = [(int(level.shape[-2]), int(level.shape[-1])) for level in levels.values()]
    usable = [size for size in sizes if min(size) >= MIN_SIDE] or [max(sizes, key=_area)]
    return min(usable, key=_area)


def _area(size: tuple[int, int]) -> int:
    return size[0] * size[1]


def stack_levels(levels: Levels) -> torch.Tensor:
    """(B, sum_l C_l, h, w): each level's magnitude resized (bilinear) to the coarsest grid,
    stacked along channels in the dict's order."""
    size = coarsest_size(levels)
    return torch.cat(
        [
            F.interpolate(level.abs(), size=size, mode="bilinear", align_corners=False)
            for level in levels.values()
        ],
        dim=1,
    )


def stacked_shape(levels: Levels) -> list[int]:
    """(sum_l C_l, h, w): the shape `stack_levels` gives, batch dimension dropped."""
    return [sum(int(level.shape[1]) for level in levels.values()), *coarsest_size(levels)]
