"""Grad-CAM (Selvaraju et al. 2017)."""

from __future__ import annotations

import torch

from cnnlens.methods.base import MethodContext, register
from cnnlens.methods.cam_base import ChannelWeightedCam, LayerGradientCam


@register
class GradCam(ChannelWeightedCam, LayerGradientCam):
    """alpha_k^c = 1/Z sum_ij dy^c/dA_ij^k;  L^c = ReLU(sum_k alpha_k^c A^k).

    Selvaraju et al., "Grad-CAM", ICCV 2017, eq. (1)-(2). The backward stops at the layer.
    """

    name = "grad_cam"
    title = "Grad-CAM"
    paper = "Selvaraju et al. 2017, arXiv:1610.02391"

    def channel_weights(self, context: MethodContext, activations: torch.Tensor) -> torch.Tensor:
        gradients = self.layer_gradients(context)  # (B, C, h, w)
        return gradients.mean(dim=(2, 3))
