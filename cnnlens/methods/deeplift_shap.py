"""DeepLIFT SHAP (Lundberg & Lee 2017): DeepLIFT averaged over baselines, through Captum."""

from __future__ import annotations

import torch
from pydantic import Field

from cnnlens.methods._baselines import BASELINE_HELP, BaselineName, reference_sets
from cnnlens.methods._captum import CaptumMethod
from cnnlens.methods._rescale import RescaleDeepLiftShap, check_rescale
from cnnlens.methods._scores import ScoredModel
from cnnlens.methods.base import MethodContext, MethodParams, register
from cnnlens.models.layers import LayerInventory


class DeepLiftShapParams(MethodParams):
    baselines: list[BaselineName] = Field(
        ["black", "white"],
        min_length=2,
        max_length=4,
        description="two or more of: " + BASELINE_HELP,
    )


@register
class DeepLiftShap(CaptumMethod):
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

    def check_model(self, inventory: LayerInventory, layer: str) -> None:
        check_rescale(self.name, inventory)

    def attribute(
        self,
        model: ScoredModel,
        x: torch.Tensor,
        rows: torch.Tensor,
        context: MethodContext,
        params: DeepLiftShapParams,
    ) -> torch.Tensor:
        explainer = RescaleDeepLiftShap(model)
        return torch.cat(
            [
                explainer.attribute(
                    x[part], baselines=references, additional_forward_args=(rows[part],)
                )
                for part, references in reference_sets(context, params.baselines)
            ]
        )
