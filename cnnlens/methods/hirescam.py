"""HiResCAM (Draelos & Carin 2020)."""

from __future__ import annotations

import torch

from cnnlens.methods.base import MethodContext, register
from cnnlens.methods.cam_base import ElementwiseGradientCam


@register
class HiResCam(ElementwiseGradientCam):
    """L^c = ReLU(sum_k dy^c/dA^k (.) A^k): Grad-CAM without averaging the gradients over
    space, so the map is exactly each location's share of the score through the layer.

    Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of
    convolutional neural networks", 2020, eq. (3); pytorch-grad-cam's HiResCAM.
    """

    name = "hirescam"
    title = "HiResCAM"
    paper = "Draelos & Carin 2020, arXiv:2011.08891"

    def element_weights(self, context: MethodContext, activations: torch.Tensor) -> torch.Tensor:
        return self.layer_gradients(context)  # (B, C, h, w)
