"""LayerCAM (Jiang et al. 2021)."""

from __future__ import annotations

import torch

from cnnlens.methods.base import MethodContext, register
from cnnlens.methods.cam_base import ElementwiseGradientCam


@register
class LayerCam(ElementwiseGradientCam):
    """L^c = ReLU(sum_k ReLU(dy^c/dA^k) (.) A^k): each location weighted by its own positive
    gradient, which keeps fine detail at shallow layers.

    Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for Localization",
    IEEE TIP 2021, eq. (5)-(6); pytorch-grad-cam's LayerCAM.
    """

    name = "layer_cam"
    title = "LayerCAM"
    paper = "Jiang et al. 2021, doi:10.1109/TIP.2021.3089943"

    def element_weights(self, context: MethodContext, activations: torch.Tensor) -> torch.Tensor:
        return self.layer_gradients(context).clamp(min=0)  # (B, C, h, w)
