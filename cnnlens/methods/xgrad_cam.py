"""XGrad-CAM (Fu et al. 2020)."""

from __future__ import annotations

import torch

from cnnlens.methods.base import MethodContext, register
from cnnlens.methods.cam_base import ChannelWeightedCam, LayerGradientCam


@register
class XGradCam(ChannelWeightedCam, LayerGradientCam):
    """w_k^c = sum_ij (A_ij^k / sum_ab A_ab^k) dy^c/dA_ij^k: the gradient averaged with the
    activation's own spatial distribution, the weights that satisfy the paper's sensitivity
    and conservation axioms best.

    Fu et al., "Axiom-based Grad-CAM", BMVC 2020, eq. (8); pytorch-grad-cam's XGradCAM
    (epsilon 1e-7 in the denominator).
    """

    name = "xgrad_cam"
    title = "XGrad-CAM"
    paper = "Fu et al. 2020, arXiv:2008.02312"

    def channel_weights(self, context: MethodContext, activations: torch.Tensor) -> torch.Tensor:
        gradients = self.layer_gradients(context)  # (B, C, h, w)
        activations = activations.detach()
        sums = activations.sum(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        return (gradients * activations / (sums + 1e-7)).sum(dim=(2, 3))  # (B, C)
