"""Feature ablation over superpixels (occlusion by segment), through Captum."""

from __future__ import annotations

import torch
from captum.attr import FeatureAblation as CaptumFeatureAblation

from cnnlens.methods._scores import ScoredModel
from cnnlens.methods._superpixels import SuperpixelMethod, SuperpixelParams
from cnnlens.methods.base import register
from cnnlens.methods.workload import Cost, Workload, chunked


@register
class FeatureAblation(SuperpixelMethod):
    """A_i = S(x) - S(x with superpixel i set to the baseline), the same for every pixel of i.

    Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014,
    sec. 4.2 (occlusion), over superpixels; captum.attr.FeatureAblation. Deterministic: one
    forward per superpixel. Shapes: x (B, 3, H, W) -> (B, 1, H, W).
    """

    name = "feature_ablation"
    title = "Feature ablation"
    paper = "Zeiler & Fergus 2014, arXiv:1311.2901"

    def cost(self, params: SuperpixelParams, workload: Workload) -> Cost:
        # SLIC returns about `segments` superpixels; one forward each, and the image's own.
        return Cost.of(
            forwards=(params.segments + 1) * workload.rows,
            peak_rows=chunked(params.segments, params.batch_size),
        )

    def explain_one(
        self,
        model: ScoredModel,
        x: torch.Tensor,
        rows: torch.Tensor,
        reference: torch.Tensor,
        mask: torch.Tensor,
        params: SuperpixelParams,
    ) -> torch.Tensor:
        return CaptumFeatureAblation(model).attribute(  # type: ignore[no-any-return]
            x,
            baselines=reference,
            additional_forward_args=(rows,),
            feature_mask=mask,
            perturbations_per_eval=params.batch_size,
        )
