"""Reference inputs by name, shared by the path, DeepLIFT, SHAP and perturbation methods."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field

from cnnlens.methods.base import MethodContext

BaselineName = Literal["black", "white", "zero", "mean"]
BASELINE_HELP = (
    "black or white pixels (normalized as the model's input), the zero input, or the "
    "image's mean colour"
)


def baseline_field(default: BaselineName = "black") -> BaselineName:
    """A `baseline` param: one reference input by name."""
    return Field(default, description=BASELINE_HELP)  # type: ignore[no-any-return,unused-ignore]


def baselines_field(least: int) -> list[BaselineName]:
    """A `baselines` param: a reference set by names, black and white by default."""
    return Field(  # type: ignore[no-any-return,unused-ignore]
        ["black", "white"],
        min_length=least,
        max_length=4,
        description=f"{least} to 4 of: {BASELINE_HELP}",
    )


def baseline(context: MethodContext, name: str) -> torch.Tensor:
    """(B, C, H, W) the reference input `name` for each sample of the batch."""
    x = context.x.detach()
    if name == "zero":
        return torch.zeros_like(x)
    if name in ("black", "white"):
        pixels = torch.zeros_like(x) if name == "black" else torch.ones_like(x)
        return context.preprocessing.normalize(pixels)
    return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()


def reference_sets(
    context: MethodContext, names: Sequence[str]
) -> list[tuple[slice, torch.Tensor]]:
    """(rows, (N, C, H, W) baselines) for explainers that take one reference set for all the
    rows they explain (Captum's SHAP): one set for the batch, or one per sample when a
    baseline differs between samples (the image's mean colour)."""
    stacked = torch.stack([baseline(context, name) for name in names], 1)  # (B, N, C, H, W)
    if "mean" not in names:
        return [(slice(None), stacked[0])]
    return [(slice(row, row + 1), stacked[row]) for row in range(stacked.shape[0])]
