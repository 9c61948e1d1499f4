"""Class activation mapping (Zhou et al. 2016)."""

from __future__ import annotations

import torch

from cnnlens.errors import IncompatibleModelError
from cnnlens.methods.base import MethodContext, register
from cnnlens.methods.cam_base import CamParams, ChannelWeightedCam
from cnnlens.methods.workload import Cost, Workload
from cnnlens.models.layers import LayerInventory, find_gap_linear_head


@register
class Cam(ChannelWeightedCam):
    """M_c(x, y) = sum_k w_k^c f_k(x, y), with w^c the linear head's row for class c.

    Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016, eq. (2).
    Valid only where logits = W GAP(f) + b, i.e. at the layer feeding a GAP + linear head.
    """

    name = "cam"
    title = "CAM"
    paper = "Zhou et al. 2016, arXiv:1512.04150"

    def cost(self, params: CamParams, workload: Workload) -> Cost:
        return Cost.of(peak_rows=workload.rows, gradient="layer")  # the shared forward only

    def check_model(self, inventory: LayerInventory, layer: str) -> None:
        if not inventory.compatibility.gap_linear_head:
            raise IncompatibleModelError(
                "CAM needs a global-average-pooling + linear head; this model has none "
                "(use grad_cam, which generalizes CAM)"
            )
        if layer != inventory.default_layer:
            raise IncompatibleModelError(
                f"CAM is defined only at the layer feeding the GAP head "
                f"({inventory.default_layer!r}), not {layer!r}"
            )

    def channel_weights(self, context: MethodContext, activations: torch.Tensor) -> torch.Tensor:
        self.check_model(context.inventory, context.layer)
        head = find_gap_linear_head(context.model, activations)
        if head is None:  # pragma: no cover - the report already checked this
            raise IncompatibleModelError("no linear head matches the layer's channels")
        return head.weight[context.targets].to(activations.dtype)  # (B, C)
