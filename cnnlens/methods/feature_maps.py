"""Feature maps: a layer's activations for an image (Zeiler & Fergus 2014; Yosinski et al. 2015)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from cnnlens.errors import IncompatibleModelError
from cnnlens.methods.base import Method, MethodContext, MethodOutput, MethodParams, register
from cnnlens.methods.workload import Cost, Workload
from cnnlens.models.hooks import hook_session


class FeatureMapsParams(MethodParams):
    top_k: int = Field(16, ge=1, le=4096, description="how many strongest channels to list")


@register
class FeatureMaps(Method):
    """A^k = f_layer(x) for every channel k; map = (1/C) sum_k A^k, upsampled to the input.

    The activations a layer computes for an image, as shown by Zeiler & Fergus, "Visualizing
    and Understanding Convolutional Networks", ECCV 2014, and Yosinski et al., "Understanding
    Neural Networks Through Deep Visualization", ICML workshop 2015. Channels are ranked by
    their mean activation. Shapes: activations (B, C, h, w) -> map (B, 1, H, W).
    """

    name = "feature_maps"
    title = "Feature maps"
    paper = "Zeiler & Fergus 2014, arXiv:1311.2901; Yosinski et al. 2015, arXiv:1506.06579"
    Params = FeatureMapsParams
    kind = "standalone"
    produces = "activations"
    uses_layer = True
    uses_target = False

    def cost(self, params: FeatureMapsParams, workload: Workload) -> Cost:
        return Cost.of(forwards=workload.rows, peak_rows=workload.rows)

    def compute(self, context: MethodContext, params: FeatureMapsParams) -> MethodOutput:
        with hook_session(context.model, layers=[context.layer]) as session, torch.no_grad():
            session.forward(context.x, input_grad=False)
            activations = session.activations[context.layer].detach()  # (B, C, h, w)
        if activations.dim() != 4:
            raise IncompatibleModelError(
                f"feature maps need a layer with (C, h, w) output; {context.layer!r} has "
                f"{tuple(activations.shape[1:])}"
            )
        channel_means = activations.mean(dim=(2, 3))  # (B, C)
        top_k = min(params.top_k, activations.shape[1])
        top_channels = channel_means.topk(top_k, dim=1).indices  # (B, k), strongest first
        mean_map = activations.mean(dim=1, keepdim=True)  # (B, 1, h, w)
        upsampled = F.interpolate(
            mean_map, size=context.x.shape[-2:], mode="bilinear", align_corners=False
        )
        extras = {
            "activations": activations,
            "channel_means": channel_means,
            "top_channels": top_channels,
            "low_resolution": mean_map,
        }
        return MethodOutput(upsampled, extras)
