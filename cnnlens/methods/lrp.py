"""Layer-wise relevance propagation (Bach et al. 2015; Montavon et al. 2019), through Zennit."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from zennit.attribution import Gradient

from cnnlens.methods._zennit import check_lrp, composite
from cnnlens.methods.base import Method, MethodContext, MethodOutput, MethodParams, register
from cnnlens.methods.workload import Cost, Workload
from cnnlens.models.heads import TENSOR_HEADS
from cnnlens.models.hooks import library_hooks
from cnnlens.models.layers import LayerInventory

CompositeName = Literal[
    "epsilon_plus_flat",
    "epsilon_gamma_box",
    "epsilon_alpha2_beta1_flat",
    "epsilon_plus",
    "epsilon_alpha2_beta1",
]


class LrpParams(MethodParams):
    composite: CompositeName = Field(
        "epsilon_plus_flat",
        description="Zennit's composite: epsilon for dense layers; z+ (plus), alpha2-beta1 or "
        "gamma for convolutions; flat or z-box for the first layer",
    )
    low: float | None = Field(
        None, description="epsilon_gamma_box: lowest input value (default: black, normalized)"
    )
    high: float | None = Field(
        None, description="epsilon_gamma_box: highest input value (default: white, normalized)"
    )
    epsilon: float = Field(1e-6, gt=0, description="the epsilon rule's stabilizer")
    gamma: float = Field(0.25, ge=0, description="epsilon_gamma_box: the gamma rule's gamma")


@register
class Lrp(Method):
    """R_i = sum_j (a_i w_ij)^rule / sum_i' (a_i' w_i'j)^rule R_j, layer by layer from R = S at
    the output to the input pixels; conservative: sum_i R_i ~= S(x).

    Bach et al., "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise
    Relevance Propagation", PLOS ONE 2015; Montavon et al., "Layer-Wise Relevance Propagation:
    An Overview", 2019 (the composites); zennit.attribution.Gradient with the architecture's
    canonizers. The model is left as it was (its weights merged and hooked only inside).
    Shapes: x (B, 3, H, W) -> (B, 3, H, W), signed relevance.
    """

    name = "lrp"
    title = "LRP"
    paper = "Bach et al. 2015, doi:10.1371/journal.pone.0130140"
    Params = LrpParams
    kind = "standalone"
    # Zennit starts the relevance from a tensor output: a detector's list of dicts has none.
    heads = TENSOR_HEADS

    def cost(self, params: LrpParams, workload: Workload) -> Cost:
        # The backward re-runs each layer's forward under its rule: about two backwards.
        rows = workload.rows
        return Cost.of(forwards=rows, backwards=2 * rows, peak_rows=rows, gradient="input")

    def check_model(self, inventory: LayerInventory, layer: str) -> None:
        check_lrp(inventory)

    def compute(self, context: MethodContext, params: LrpParams) -> MethodOutput:
        x = context.x.detach().clone()
        prep = context.preprocessing
        low = (
            prep.normalize(torch.zeros_like(x))
            if params.low is None
            else torch.full_like(x, params.low)
        )
        high = (
            prep.normalize(torch.ones_like(x))
            if params.high is None
            else torch.full_like(x, params.high)
        )
        target = context.target

        def output_relevance(output: torch.Tensor) -> torch.Tensor:
            """R = (dS/d output) * output: each output's share of the score S, which is
            linear in the outputs (a logit, +/- a binary logit, a region's sum), so that the
            relevance starts from S itself (Bach et al. 2015: sum_p R_p = f(x))."""
            with torch.enable_grad():
                output = output.detach().requires_grad_(True)
                (readout,) = torch.autograd.grad(target.score(output).sum(), output)
            return readout * output.detach()

        with library_hooks(context.model) as modules, torch.enable_grad():
            rules = composite(
                params.composite, context.model, modules, low, high, params.epsilon, params.gamma
            )
            _, relevance = Gradient(context.model, rules)(x, attr_output=output_relevance)
        return MethodOutput(relevance.detach())
