"""DeepLIFT SHAP (Lundberg & Lee 2017): DeepLIFT averaged over baselines, through Captum."""

from __future__ import annotations

import torch

from cnnlens.methods._baselines import BaselineName, baselines_field, reference_sets
from cnnlens.methods._captum import CaptumCall
from cnnlens.methods._rescale import RescaleDeepLiftShap, RescaleMethod
from cnnlens.methods.base import MethodParams, register


class DeepLiftShapParams(MethodParams):
    baselines: list[BaselineName] = baselines_field(2)


@register
class DeepLiftShap(RescaleMethod):
    """phi_i = 1/|R| sum_{x' in R} DeepLIFT_i(x; x'): Shapley values approximated by DeepLIFT's
    Rescale multipliers, averaged over the reference set R (assumes independent features).

    Lundberg & Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017,
    sec. 4.2 (Deep SHAP); captum.attr.DeepLiftShap. Shapes: x (B, 3, H, W) -> (B, 3, H, W).
    """

    name = "deeplift_shap"
    title = "DeepLIFT SHAP"
    paper = "Lundberg & Lee 2017, arXiv:1705.07874"
    Params = DeepLiftShapParams

    def rows_per_image(self, params: DeepLiftShapParams) -> int:
        return 2 * len(params.baselines)  # each input beside each baseline

    def attribute(self, call: CaptumCall, params: DeepLiftShapParams) -> torch.Tensor:
        explainer = RescaleDeepLiftShap(call.model)
        return torch.cat(
            [
                explainer.attribute(
                    call.x[part], baselines=references, additional_forward_args=(call.rows[part],)
                )
                for part, references in reference_sets(call.context, params.baselines)
            ]
        )
