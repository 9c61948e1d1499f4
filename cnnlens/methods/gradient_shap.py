"""GradientSHAP (Lundberg & Lee 2017; Erion et al. 2021, expected gradients), through Captum."""

from __future__ import annotations

import torch
from captum.attr import GradientShap as CaptumGradientShap
from pydantic import Field

from cnnlens.methods._baselines import BaselineName, baselines_field, reference_sets
from cnnlens.methods._captum import CaptumCall, CaptumMethod, seeded
from cnnlens.methods.base import MethodParams, register
from cnnlens.methods.workload import cost_field


class GradientShapParams(MethodParams):
    baselines: list[BaselineName] = baselines_field(1)
    n_samples: int = cost_field(5, "time", "random points per image (all in one batch)")
    stdevs: float = Field(
        0.0, ge=0, description="std of the Gaussian noise added to each point, in input units"
    )
    seed: int = Field(0, ge=0)


@register
class GradientShap(CaptumMethod):
    """phi_i = E_{x' ~ R, a ~ U(0,1), e ~ N(0, s^2)} [(x_i - x'_i) dS/dx_i (x' + a (x - x') + e)]:
    Shapley values estimated by expected gradients over random baselines and path points.

    Lundberg & Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017;
    Erion et al., "Improving performance of deep learning models with axiomatic attribution
    priors and expected gradients", Nature MI 2021; captum.attr.GradientShap, seeded.
    Shapes: x (B, 3, H, W) -> (B, 3, H, W), signed.
    """

    name = "gradient_shap"
    title = "GradientSHAP"
    paper = "Lundberg & Lee 2017, arXiv:1705.07874"
    Params = GradientShapParams

    def rows_per_image(self, params: GradientShapParams) -> int:
        return params.n_samples

    def attribute(self, call: CaptumCall, params: GradientShapParams) -> torch.Tensor:
        explainer = CaptumGradientShap(call.model)
        with seeded(params.seed):
            return torch.cat(
                [
                    explainer.attribute(
                        call.x[part],
                        baselines=references,
                        n_samples=params.n_samples,
                        stdevs=params.stdevs,
                        additional_forward_args=(call.rows[part],),
                    )
                    for part, references in reference_sets(call.context, params.baselines)
                ]
            )
