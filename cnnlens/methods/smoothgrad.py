"""SmoothGrad (Smilkov et al. 2017)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from cnnlens.methods._batched_gradients import (
    BatchedGradientMethod,
    BatchedGradientParams,
    Transform,
    mean_input_gradients,
)
from cnnlens.methods.base import MethodContext, MethodOutput, register
from cnnlens.methods.workload import cost_field


class SmoothGradParams(BatchedGradientParams):
    samples: int = cost_field(25, "time", "noisy copies per image")
    noise_level: float = Field(
        0.15, gt=0, le=1, description="noise std as a share of the input's value range"
    )
    squared: bool = Field(False, description="average squared gradients (SmoothGrad-SQ)")
    variant: Literal["smoothgrad", "vargrad"] = Field(
        "smoothgrad",
        description="the mean of the noisy gradients, or their variance (VarGrad)",
    )
    reduce: Literal["max_abs", "none"] = Field(
        "max_abs", description="max over colour channels of |grad| (as saliency), or raw"
    )
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _squared_is_a_mean(self) -> SmoothGradParams:
        if self.squared and self.variant == "vargrad":
            raise ValueError("squared averages squared gradients: it applies to smoothgrad only")
        return self


@register
class SmoothGrad(BatchedGradientMethod):
    """M(x) = 1/n sum_s g_s, g_s = dS_c(x + eps_s)/dx, eps_s ~ N(0, sigma^2), sigma = level
    (max - min); VarGrad: V(x) = 1/n sum_s g_s^2 - M(x)^2.

    Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017, eq. (3); sigma as a
    share of the input range (sec. 3.1). VarGrad: Adebayo et al., "Local Explanation Methods
    for Deep Neural Networks Lack Sensitivity to Parameter Values", ICLR workshop 2018
    (captum's NoiseTunnel nt_type="vargrad"). Seeded, so the same request gives the same map.
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
        moments = mean_input_gradients(
            context.model,
            x,
            noisy,
            params.samples,
            context.target,
            weights,
            params.batch_size,
            transforms=_MOMENTS[(params.variant, params.squared)],
        )
        gradient = moments[0] if len(moments) == 1 else moments[1] - moments[0].square()
        if params.reduce == "max_abs":
            return MethodOutput(gradient.abs().amax(dim=1, keepdim=True))
        return MethodOutput(gradient)


# What each variant averages: the gradient, its square, or both (a variance).
_MOMENTS: dict[tuple[str, bool], tuple[Transform, ...]] = {
    ("smoothgrad", False): (None,),
    ("smoothgrad", True): (torch.square,),
    ("vargrad", False): (None, torch.square),
}
