"""Score-CAM (Wang et al. 2020)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from cnnlens.methods.base import MethodContext, register
from cnnlens.methods.cam_base import GradientFreeCam, GradientFreeCamParams
from cnnlens.methods.workload import Cost, Workload, chunked


class ScoreCamParams(GradientFreeCamParams):
    weighting: Literal["probability", "channel_softmax"] = Field(
        "probability",
        description="target probability of each masked input (the paper), or a softmax over "
        "channels of the target logits (as pytorch-grad-cam)",
    )


@register
class ScoreCam(GradientFreeCam):
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

    def cost(self, params: ScoreCamParams, workload: Workload) -> Cost:
        scored = self.cost_param_value(params, "channels", workload)
        mask_rows = chunked(scored, params.batch_size)
        return Cost.of(
            forwards=workload.rows * (1 + scored),  # the activations, then one per channel
            peak_rows=max(workload.rows, mask_rows),
            resident_values=mask_rows * workload.pixels,  # the chunk's upsampled masks
        )

    def forward_weights(
        self,
        context: MethodContext,
        params: ScoreCamParams,
        activations: torch.Tensor,
        logits: torch.Tensor,
    ) -> torch.Tensor:
        x = context.x.detach()
        chosen = self.most_active(activations, params.channels)  # (B, n)
        scored = torch.stack(
            [
                _masked_scores(context.model, x[b], activations[b, chosen[b]], int(target), params)
                for b, target in enumerate(context.targets)
            ]
        )  # (B, n)
        if params.weighting == "channel_softmax":
            scored = scored.softmax(dim=1)
        weights = torch.zeros(activations.shape[:2], dtype=scored.dtype, device=scored.device)
        return weights.scatter_(1, chosen, scored)  # (B, C); unscored channels weigh 0


def _masked_scores(
    forward: Callable[[torch.Tensor], torch.Tensor],
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
        logits = forward(image.unsqueeze(0) * masks)  # (n, K)
        if params.weighting == "probability":
            scores.append(logits.softmax(dim=1)[:, target])
        else:
            scores.append(logits[:, target])
    return torch.cat(scores)
