"""Grad-CAM (Selvaraju et al. 2017)."""

from __future__ import annotations

import torch

from cnnlens.methods.base import MethodContext, Requirements, register
from cnnlens.methods.cam_base import CamMethod, CamParams
from cnnlens.methods.workload import Cost, Workload
from cnnlens.models.hooks import ReluRule


@register
class GradCam(CamMethod):
    """alpha_k^c = 1/Z sum_ij dy^c/dA_ij^k;  L^c = ReLU(sum_k alpha_k^c A^k).

    Selvaraju et al., "Grad-CAM", ICCV 2017, eq. (1)-(2). The backward stops at the layer.
    """

    name = "grad_cam"
    title = "Grad-CAM"
    paper = "Selvaraju et al. 2017, arXiv:1610.02391"

    def cost(self, params: CamParams, workload: Workload) -> Cost:
        # The backward ends at the layer: an upper bound by a whole one.
        return Cost.of(backwards=workload.rows, peak_rows=workload.rows, gradient="layer")

    def requirements(self, params: CamParams, layer: str) -> Requirements:
        return Requirements(
            layers=frozenset({layer}), gradients=frozenset({(layer, ReluRule.GRADIENT)})
        )

    def channel_weights(self, context: MethodContext, activations: torch.Tensor) -> torch.Tensor:
        gradients = context.shared.gradient(context.layer, ReluRule.GRADIENT)  # (B, C, h, w)
        return gradients.mean(dim=(2, 3))
