"""DeepLIFT with the Rescale rule (Shrikumar, Greenside & Kundaje 2017), through Captum."""

from __future__ import annotations

import torch

from cnnlens.methods._baselines import BaselineName, baseline, baseline_field
from cnnlens.methods._captum import CaptumCall
from cnnlens.methods._rescale import RescaleDeepLift, RescaleMethod
from cnnlens.methods.base import MethodParams, register


class DeepLiftParams(MethodParams):
    baseline: BaselineName = baseline_field()


@register
class DeepLiftRescale(RescaleMethod):
    """C_i = (x_i - x'_i) m_i, with m the chain of multipliers (y - y') / (x - x') taken at
    every nonlinearity between input and score (the Rescale rule).

    Shrikumar et al., "Learning Important Features Through Propagating Activation
    Differences", ICML 2017, eq. (1)-(3) and sec. 3.5.2; captum.attr.DeepLift. Summation to
    delta: sum_i C_i = S(x) - S(x'). Shapes: x (B, 3, H, W) -> (B, 3, H, W), signed.
    """

    name = "deeplift"
    title = "DeepLIFT (Rescale)"
    paper = "Shrikumar et al. 2017, arXiv:1704.02685"
    Params = DeepLiftParams

    def rows_per_image(self, params: DeepLiftParams) -> int:
        return 2  # the inputs and their baselines in one batch

    def attribute(self, call: CaptumCall, params: DeepLiftParams) -> torch.Tensor:
        return RescaleDeepLift(call.model).attribute(  # type: ignore[no-any-return]
            call.x,
            baselines=baseline(call.context, params.baseline),
            additional_forward_args=(call.rows,),
        )
