"""Score-CAM (Wang et al. 2020)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from cnnlens.errors import IncompatibleModelError
from cnnlens.methods.base import Method, MethodContext, MethodOutput, MethodParams, register
from cnnlens.methods.workload import Cost, Workload, chunked, cost_field
from cnnlens.models.hooks import hook_session

# The 64 most active of efficientnet_lite0's 1280 last-layer channels: 1/14 of the CPU time of
# all of them (10 vs 142 CPU-s, measured), and the map keeps r = 0.995 with the full one.
DEFAULT_CHANNELS = 64


class ScoreCamParams(MethodParams):
    weighting: Literal["probability", "channel_softmax"] = Field(
        "probability",
        description="target probability of each masked input (the paper), or a softmax over "
        "channels of the target logits (as pytorch-grad-cam)",
    )
    batch_size: int = cost_field(32, "memory", "masked inputs per forward (bounds memory)")
    channels: Annotated[int, Field(ge=1)] | Literal["all"] = cost_field(
        DEFAULT_CHANNELS,
        "time",
        "score only this many channels, the most active on average (the others weigh 0; one "
        'forward each); "all": every channel, as in the paper',
        ge=None,
        le=None,
    )
    relu: bool = True


@register
class ScoreCam(Method):
    """w_k^c = f_c(x * H^k), H^k = minmax(upsample(A^k));  L^c = ReLU(sum_k w_k^c A^k).

    Wang et al., "Score-CAM: Score-Weighted Visual Explanations for CNNs", CVPR workshops
    2020, eq. (5)-(6): no gradients, one forward per channel (batched by `batch_size`).
    Shapes: activations (B, C, h, w) -> map (B, 1, H, W).
    """

    name = "score_cam"
    segmentation = False
    title = "Score-CAM"
    paper = "Wang et al. 2020, arXiv:1910.01279"
    Params = ScoreCamParams
    kind = "standalone"
    uses_layer = True

    def cost(self, params: ScoreCamParams, workload: Workload) -> Cost:
        scored = self.cost_param_value(params, "channels", workload)
        mask_rows = chunked(scored, params.batch_size)
        return Cost.of(
            forwards=workload.rows * (1 + scored),  # the activations, then one per channel
            peak_rows=max(workload.rows, mask_rows),
            resident_values=mask_rows * workload.pixels,  # the chunk's upsampled masks
        )

    def cost_param_value(self, params: ScoreCamParams, name: str, workload: Workload) -> int:
        if name != "channels":
            return super().cost_param_value(params, name, workload)
        layer = workload.layer_channels
        if params.channels == "all":
            if layer is None:
                raise ValueError(
                    "score_cam's cost with channels=\"all\" needs the layer's channels"
                )
            return layer
        return params.channels if layer is None else min(params.channels, layer)

    def compute(self, context: MethodContext, params: ScoreCamParams) -> MethodOutput:
        x = context.x.detach()
        with hook_session(context.model, layers=[context.layer]) as session, torch.no_grad():
            session.forward(x, input_grad=False)
            activations = session.activations[context.layer].detach()  # (B, C, h, w)
            if activations.dim() != 4:
                raise IncompatibleModelError(
                    f"score_cam needs a layer with (C, h, w) output; {context.layer!r} has "
                    f"{tuple(activations.shape[1:])}"
                )
            channels = activations.shape[1]
            count = channels if params.channels == "all" else min(params.channels, channels)
            # (B, n) the channels to score: all, or the most active on average
            chosen = activations.mean(dim=(2, 3)).topk(count, dim=1).indices
            scored = torch.stack(
                [
                    _masked_scores(
                        session.forward, x[b], activations[b, chosen[b]], int(target), params
                    )
                    for b, target in enumerate(context.targets)
                ]
            )  # (B, n)
        if params.weighting == "channel_softmax":
            scored = scored.softmax(dim=1)
        weights = torch.zeros(activations.shape[:2], dtype=scored.dtype, device=scored.device)
        weights.scatter_(1, chosen, scored)  # (B, C); unscored channels weigh 0
        cam = torch.einsum("bc,bchw->bhw", weights, activations).unsqueeze(1)
        if params.relu:
            cam = cam.clamp(min=0)
        upsampled = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return MethodOutput(upsampled, {"low_resolution": cam, "channel_weights": weights})


def _masked_scores(
    forward: Callable[..., torch.Tensor],
    image: torch.Tensor,
    activations: torch.Tensor,
    target: int,
    params: ScoreCamParams,
) -> torch.Tensor:
    """(C,) the target's score for the image masked by each normalized, upsampled channel."""
    scores = []
    for start in range(0, activations.shape[0], params.batch_size):
        chunk = activations[start : start + params.batch_size].unsqueeze(1)  # (n, 1, h, w)
        masks = F.interpolate(chunk, size=image.shape[-2:], mode="bilinear", align_corners=False)
        low = masks.flatten(1).amin(dim=1).view(-1, 1, 1, 1)
        high = masks.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
        masks = (masks - low) / (high - low + 1e-8)  # (n, 1, H, W) in [0, 1]
        logits = forward(image.unsqueeze(0) * masks, input_grad=False)  # (n, K)
        if params.weighting == "probability":
            scores.append(logits.softmax(dim=1)[:, target])
        else:
            scores.append(logits[:, target])
    return torch.cat(scores)
