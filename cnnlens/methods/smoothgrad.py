"""SmoothGrad (Smilkov et al. 2017)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from cnnlens.methods._batched_gradients import (
    BatchedGradientMethod,
    BatchedGradientParams,
    mean_input_gradient,
)
from cnnlens.methods.base import MethodContext, MethodOutput, register
from cnnlens.methods.workload import cost_field


class SmoothGradParams(BatchedGradientParams):
    samples: int = cost_field(25, "time", "noisy copies per image")
    noise_level: float = Field(
        0.15, gt=0, le=1, description="noise std as a share of the input's value range"
    )
    squared: bool = Field(False, description="average squared gradients (SmoothGrad-SQ)")
    reduce: Literal["max_abs", "none"] = Field(
        "max_abs", description="max over colour channels of |grad| (as saliency), or raw"
    )
    seed: int = Field(0, ge=0)


@register
class SmoothGrad(BatchedGradientMethod):
    """M(x) = 1/n sum_s dS_c(x + eps_s)/dx, eps_s ~ N(0, sigma^2), sigma = level (max - min).

    Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017, eq. (3); sigma as a
    share of the input range (sec. 3.1). Seeded, so the same request gives the same map.
    Shapes: x (B, 3, H, W) -> (B, 1, H, W) with reduce="max_abs", else (B, 3, H, W).
    """

    name = "smoothgrad"
    title = "SmoothGrad"
    paper = "Smilkov et al. 2017, arXiv:1706.03825"
    Params = SmoothGradParams

    def points(self, params: SmoothGradParams) -> int:
        return params.samples

    def compute(self, context: MethodContext, params: SmoothGradParams) -> MethodOutput:
        x = context.x.detach()
        span = x.flatten(1).amax(dim=1) - x.flatten(1).amin(dim=1)  # (B,)
        sigma = (params.noise_level * span).view(-1, 1, 1, 1)
        generator = torch.Generator().manual_seed(params.seed)

        def noisy(s: int) -> torch.Tensor:
            # Drawn when due (in order: the same noise whatever the chunking), never all at once.
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            return x + sigma * noise

        weights = torch.full((params.samples,), 1.0 / params.samples, dtype=x.dtype)
        gradient = mean_input_gradient(
            context.model,
            x,
            noisy,
            params.samples,
            context.target,
            weights,
            params.batch_size,
            transform=torch.square if params.squared else None,
        )
        if params.reduce == "max_abs":
            return MethodOutput(gradient.abs().amax(dim=1, keepdim=True))
        return MethodOutput(gradient)
