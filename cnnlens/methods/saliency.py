"""Gradient saliency (Simonyan, Vedaldi & Zisserman 2014)."""

from __future__ import annotations

from typing import Literal

from cnnlens.methods.base import (
    Method,
    MethodContext,
    MethodOutput,
    MethodParams,
    Requirements,
    register,
)
from cnnlens.models.hooks import ReluRule


class SaliencyParams(MethodParams):
    mode: Literal["gradient", "gradient_x_input"] = "gradient"


@register
class Saliency(Method):
    """Image-specific class saliency, M_ij = max_c |dS_c/dI_cij|.

    Simonyan et al., "Deep Inside Convolutional Networks", ICLR workshop 2014, eq. (3)-(4).
    `gradient_x_input` gives sum_c I_cij * dS_c/dI_cij (Shrikumar et al. 2016), signed.
    Shapes: x (B, 3, H, W) -> (B, 1, H, W).
    """

    name = "saliency"
    title = "Gradient saliency"
    paper = "Simonyan et al. 2014, arXiv:1312.6034"
    Params = SaliencyParams

    def requirements(self, params: SaliencyParams, layer: str) -> Requirements:
        return Requirements.input_gradient(ReluRule.GRADIENT)

    def compute(self, context: MethodContext, params: SaliencyParams) -> MethodOutput:
        gradient = context.shared.input_gradient(ReluRule.GRADIENT)  # (B, 3, H, W)
        if params.mode == "gradient_x_input":
            return MethodOutput((gradient * context.x).sum(dim=1, keepdim=True))
        return MethodOutput(gradient.abs().amax(dim=1, keepdim=True))
