"""Grad-CAM++ (Chattopadhay et al. 2018)."""

from __future__ import annotations

import torch

from cnnlens.methods.base import MethodContext, register
from cnnlens.methods.cam_base import ChannelWeightedCam, LayerGradientCam


@register
class GradCamPlusPlus(ChannelWeightedCam, LayerGradientCam):
    """w_k^c = sum_ij a_ij^kc ReLU(dY^c/dA_ij^k), a = g^2 / (2 g^2 + sum_ab A_ab^k g^3).

    Chattopadhay et al., "Grad-CAM++", WACV 2018, eq. (19) with the exponential-score
    assumption that turns higher derivatives into powers of the gradient g; a = 0 where g = 0.
    """

    name = "grad_cam_pp"
    title = "Grad-CAM++"
    paper = "Chattopadhay et al. 2018, arXiv:1710.11063"

    def channel_weights(self, context: MethodContext, activations: torch.Tensor) -> torch.Tensor:
        gradients = self.layer_gradients(context)  # (B, C, h, w)
        squared = gradients.square()
        activation_sums = activations.detach().sum(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        alphas = squared / (2 * squared + activation_sums * squared * gradients + 1e-6)
        alphas = torch.where(gradients != 0, alphas, torch.zeros_like(alphas))
        return (alphas * gradients.clamp(min=0)).sum(dim=(2, 3))  # (B, C)
