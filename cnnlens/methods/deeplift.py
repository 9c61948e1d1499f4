"""DeepLIFT with the Rescale rule (Shrikumar, Greenside & Kundaje 2017), through Captum."""

from __future__ import annotations

import torch

from cnnlens.methods._baselines import BaselineName, baseline, baseline_field
from cnnlens.methods._captum import CaptumMethod
from cnnlens.methods._rescale import RescaleDeepLift, check_rescale
from cnnlens.methods._scores import ScoredModel
from cnnlens.methods.base import MethodContext, MethodParams, register
from cnnlens.models.layers import LayerInventory


class DeepLiftParams(MethodParams):
    baseline: BaselineName = baseline_field()


@register
class DeepLiftRescale(CaptumMethod):
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

    def check_model(self, inventory: LayerInventory, layer: str) -> None:
        check_rescale(self.name, inventory)

    def attribute(
        self,
        model: ScoredModel,
        x: torch.Tensor,
        rows: torch.Tensor,
        context: MethodContext,
        params: DeepLiftParams,
    ) -> torch.Tensor:
        reference = baseline(context, params.baseline)
        return RescaleDeepLift(model).attribute(  # type: ignore[no-any-return]
            x, baselines=reference, additional_forward_args=(rows,)
        )
