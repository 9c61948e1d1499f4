"""Shared machinery of the CAM family: capture, the class map, ReLU, upsampling.

A CAM of the shared pass supplies its class map (`CamMethod.class_map`): most through their
channel weights w^c (`ChannelWeightedCam`), element-wise variants through a weight per
activation (`ElementwiseGradientCam`), EigenCAM through its projection. Gradient-free CAMs
measure their weights with further forwards (`GradientFreeCam`).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Annotated, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from cnnlens.errors import IncompatibleModelError
from cnnlens.methods.base import Method, MethodContext, MethodOutput, MethodParams, Requirements
from cnnlens.methods.workload import Cost, Workload, cost_field
from cnnlens.models.hooks import ReluRule, hook_session


class CamParams(MethodParams):
    relu: bool = True  # keep only features with a positive influence (the papers' choice)


# The 64 most active of efficientnet_lite0's 1280 last-layer channels: 1/14 of the CPU time of
# all of them (10 vs 142 CPU-s, measured), and the map keeps r = 0.995 with the full one.
DEFAULT_CHANNELS = 64


class GradientFreeCamParams(CamParams):
    """A CAM that weighs channels with one forward each (masked or ablated copies)."""

    batch_size: int = cost_field(32, "memory", "copies of one image per forward (bounds memory)")
    channels: Annotated[int, Field(ge=1)] | Literal["all"] = cost_field(
        DEFAULT_CHANNELS,
        "time",
        "weigh only this many channels, the most active on average (the others weigh 0; one "
        'forward each); "all": every channel, as in the paper',
        ge=None,
        le=None,
    )


def weighted_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """sum_k w_k A^k as one batched matrix product: (B, C) x (B, C, h, w) -> (B, 1, h, w)."""
    batch, channels, height, width = activations.shape
    flat = activations.detach().reshape(batch, channels, height * width)
    return torch.matmul(weights.unsqueeze(1), flat).view(batch, 1, height, width)


class CamBase(Method):
    """What every CAM shares: its layer, the (B, C, h, w) check, the ReLU and the upsampling
    of L^c to the input size. Shapes: activations (B, C, h, w) -> map (B, 1, H, W).
    """

    uses_layer = True
    Params: ClassVar[type[MethodParams]] = CamParams

    def requirements(self, params: CamParams, layer: str) -> Requirements:
        return Requirements(layers=frozenset({layer}))

    def spatial(self, context: MethodContext, activations: torch.Tensor) -> torch.Tensor:
        """The layer's activations, refused (422) unless (B, C, h, w)."""
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
        return activations

    def finish(self, context: MethodContext, params: Any, cam: torch.Tensor) -> MethodOutput:
        """The class map (B, 1, h, w), ReLU'd and upsampled to the input size."""
        if params.relu:
            cam = cam.clamp(min=0)
        upsampled = F.interpolate(
            cam, size=context.x.shape[-2:], mode="bilinear", align_corners=False
        )
        return MethodOutput(upsampled, {"low_resolution": cam})


class CamMethod(CamBase):
    """A CAM read from the shared pass: L^c = ReLU(class_map(A)), upsampled bilinearly."""

    @abstractmethod
    def class_map(
        self, context: MethodContext, params: Any, activations: torch.Tensor
    ) -> torch.Tensor:
        """(B, 1, h, w) before the ReLU, from the layer's activations (B, C, h, w)."""

    def compute(self, context: MethodContext, params: CamParams) -> MethodOutput:
        activations = self.spatial(context, context.shared.activation(context.layer))
        return self.finish(context, params, self.class_map(context, params, activations))


class ChannelWeightedCam(CamMethod):
    """L^c = ReLU(sum_k w_k^c A^k): a subclass supplies only the channel weights w^c (B, C)."""

    @abstractmethod
    def channel_weights(self, context: MethodContext, activations: torch.Tensor) -> torch.Tensor:
        """(B, C) weight of each feature map for each sample's target."""

    def class_map(
        self, context: MethodContext, params: Any, activations: torch.Tensor
    ) -> torch.Tensor:
        return weighted_sum(self.channel_weights(context, activations), activations)


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


class ElementwiseGradientCam(LayerGradientCam):
    """L^c = ReLU(sum_k W_k^c (.) A^k): a weight per activation, not per channel."""

    @abstractmethod
    def element_weights(self, context: MethodContext, activations: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) weight of each activation for each sample's target."""

    def class_map(
        self, context: MethodContext, params: Any, activations: torch.Tensor
    ) -> torch.Tensor:
        weights = self.element_weights(context, activations)
        return (weights * activations.detach()).sum(dim=1, keepdim=True)


class GradientFreeCam(CamBase):
    """A CAM whose channel weights are measured with further forwards (Score-CAM,
    Ablation-CAM): it runs its own passes, the first a no-grad forward that captures the layer.
    """

    kind = "standalone"

    def cost_param_value(self, params: Any, name: str, workload: Workload) -> int:
        """`channels` ("all" or a count) as the number of channels weighed."""
        if name != "channels":
            return super().cost_param_value(params, name, workload)
        layer = workload.layer_channels
        if params.channels == "all":
            if layer is None:
                raise ValueError(
                    f"{self.name}'s cost with channels=\"all\" needs the layer's channels"
                )
            return int(layer)
        return int(params.channels if layer is None else min(params.channels, layer))

    @staticmethod
    def most_active(activations: torch.Tensor, channels: int | str) -> torch.Tensor:
        """(B, n) the channels to weigh: all, or the n most active on average per sample."""
        count = (
            activations.shape[1] if channels == "all" else min(int(channels), activations.shape[1])
        )
        return activations.mean(dim=(2, 3)).topk(count, dim=1).indices

    @abstractmethod
    def forward_weights(
        self, context: MethodContext, params: Any, activations: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor:
        """(B, C) channel weights, from the layer's activations (B, C, h, w), the batch's
        logits and any forwards of the model (the layer no longer captured)."""

    def compute(self, context: MethodContext, params: Any) -> MethodOutput:
        with hook_session(context.model, layers=[context.layer]) as session, torch.no_grad():
            logits = session.forward(context.x.detach(), input_grad=False)
            activations = self.spatial(context, session.activations[context.layer].detach())
        with torch.no_grad():
            weights = self.forward_weights(context, params, activations, logits)  # (B, C)
        output = self.finish(context, params, weighted_sum(weights, activations))
        output.extras["channel_weights"] = weights
        return output
