"""Ablation-CAM (Desai & Ramaswamy 2020)."""

from __future__ import annotations

import torch

from cnnlens.methods.base import MethodContext, register
from cnnlens.methods.cam_base import GradientFreeCam, GradientFreeCamParams
from cnnlens.methods.workload import Cost, Workload, chunked
from cnnlens.models.heads import TENSOR_HEADS
from cnnlens.models.hooks import substitute_output


@register
class AblationCam(GradientFreeCam):
    """w_k^c = (y^c - y^c_k) / y^c, y^c_k the score with feature map A^k set to zero;
    L^c = ReLU(sum_k w_k^c A^k).

    Desai & Ramaswamy, "Ablation-CAM: Visual Explanations for Deep Convolutional Network via
    Gradient-free Localization", WACV 2020, eq. (2)-(3); pytorch-grad-cam's AblationCAM. The
    ablations of one image go `batch_size` at a time and run the model from the layer on:
    the part before it runs once per batch, for one row.
    Shapes: activations (B, C, h, w) -> map (B, 1, H, W).
    """

    name = "ablation_cam"
    title = "Ablation-CAM"
    paper = "Desai & Ramaswamy 2020, doi:10.1109/WACV45572.2020.9093360"
    Params = GradientFreeCamParams
    # Ablations substitute one tensor output; a detector's default layer is a dict of levels.
    heads = TENSOR_HEADS

    def cost(self, params: GradientFreeCamParams, workload: Workload) -> Cost:
        ablated = self.cost_param_value(params, "channels", workload)
        chunk = chunked(ablated, params.batch_size)
        # Upper bound: each ablation counted as a whole row through the model.
        return Cost.of(forwards=workload.rows * (1 + ablated), peak_rows=max(workload.rows, chunk))

    def forward_weights(
        self,
        context: MethodContext,
        params: GradientFreeCamParams,
        activations: torch.Tensor,
        logits: torch.Tensor,
    ) -> torch.Tensor:
        batch = activations.shape[0]
        original = context.target.score(logits)  # (B,)
        chosen = self.most_active(activations, params.channels)  # (B, n)
        weights = torch.zeros(
            activations.shape[:2], dtype=activations.dtype, device=activations.device
        )
        for b in range(batch):
            ablated = torch.cat(
                [
                    _ablated_scores(context, b, activations[b], chunk)
                    for chunk in torch.split(chosen[b], params.batch_size)
                ]
            )  # (n,)
            weights[b, chosen[b]] = (original[b] - ablated) / original[b]
        return weights


def _ablated_scores(
    context: MethodContext,
    row: int,
    activations: torch.Tensor,
    channels: torch.Tensor,
) -> torch.Tensor:
    """(n,) the target's score of sample `row` with each of `channels` zeroed at the layer.

    The layer's output is replaced by n ablated copies of `activations` (C, h, w) while the
    model runs on the one image: what comes before the layer runs once, and tensors it passes
    around the layer (a skip connection) broadcast over the n rows. A model that cannot take
    that (it fixes the batch size, or concatenates across the layer) runs the image n times.
    """
    count = channels.shape[0]
    ablated = activations.unsqueeze(0).repeat(count, 1, 1, 1)  # (n, C, h, w)
    ablated[torch.arange(count), channels] = 0
    rows = torch.full((count,), row, device=activations.device)
    image = context.x[row : row + 1].detach()
    with substitute_output(context.model, context.layer, lambda output: ablated):
        try:
            logits = context.model(image)
            if logits.shape[0] == count:
                return context.target.score(logits, rows)
        except RuntimeError:
            pass
        return context.target.score(context.model(image.repeat(count, 1, 1, 1)), rows)
