"""Shared machinery of the CAM family: capture, channel weighting, ReLU, upsampling."""

from __future__ import annotations

from abc import abstractmethod

import torch
import torch.nn.functional as F

from cnnlens.errors import IncompatibleModelError
from cnnlens.methods.base import Method, MethodContext, MethodOutput, MethodParams, Requirements
from cnnlens.methods.workload import Cost, Workload
from cnnlens.models.hooks import ReluRule


class CamParams(MethodParams):
    relu: bool = True  # keep only features with a positive influence (the papers' choice)


class CamMethod(Method):
    """L^c = ReLU(sum_k w_k^c A^k), upsampled bilinearly to the input size.

    A subclass supplies only the channel weights w^c (B, C).
    Shapes: activations (B, C, h, w) -> map (B, 1, H, W).
    """

    uses_layer = True
    Params = CamParams

    def requirements(self, params: CamParams, layer: str) -> Requirements:
        return Requirements(layers=frozenset({layer}))

    @abstractmethod
    def channel_weights(self, context: MethodContext, activations: torch.Tensor) -> torch.Tensor:
        """(B, C) weight of each feature map for each sample's target."""

    def compute(self, context: MethodContext, params: CamParams) -> MethodOutput:
        activations = context.shared.activation(context.layer)
        if activations.dim() != 4:
            raise IncompatibleModelError(
                f"{self.name} needs a layer with (C, h, w) output; {context.layer!r} has "
                f"{tuple(activations.shape[1:])}"
            )
        if activations.shape[0] != context.x.shape[0]:  # e.g. a detector's per-proposal head
            raise IncompatibleModelError(
                f"{self.name}: layer {context.layer!r} gives {activations.shape[0]} maps for "
                f"{context.x.shape[0]} images (one per proposal, not per image); pick a "
                "backbone layer"
            )
        weights = self.channel_weights(context, activations)  # (B, C)
        # sum_k w_k A^k as one batched matrix product: (B, 1, C) @ (B, C, hw)
        batch, _, height, width = activations.shape
        flat = activations.detach().reshape(batch, activations.shape[1], height * width)
        cam = torch.matmul(weights.unsqueeze(1), flat).view(batch, 1, height, width)
        if params.relu:
            cam = cam.clamp(min=0)
        upsampled = F.interpolate(
            cam, size=context.x.shape[-2:], mode="bilinear", align_corners=False
        )
        return MethodOutput(upsampled, {"low_resolution": cam})


class LayerGradientCam(CamMethod):
    """A CAM whose channel weights come from the class score's gradient at the layer."""

    def cost(self, params: CamParams, workload: Workload) -> Cost:
        # The backward ends at the layer: an upper bound by a whole one.
        return Cost.of(backwards=workload.rows, peak_rows=workload.rows, gradient="layer")

    def requirements(self, params: CamParams, layer: str) -> Requirements:
        return Requirements(
            layers=frozenset({layer}), gradients=frozenset({(layer, ReluRule.GRADIENT)})
        )

    @staticmethod
    def layer_gradients(context: MethodContext) -> torch.Tensor:
        """dy^c/dA at the layer, (B, C, h, w)."""
        return context.shared.gradient(context.layer, ReluRule.GRADIENT)
