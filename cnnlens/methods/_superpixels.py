"""The features of the perturbation methods (LIME, Kernel SHAP, feature ablation): superpixels.

SLIC (Achanta et al. 2012, scikit-image) by default: its segments follow colour edges, so that
switching one feature off removes a coherent part of an object rather than a patch across
several, which is what LIME's paper perturbs (it used quickshift; SLIC is faster and its
segment count is set directly). `grid` gives square cells instead: the same features for every
image, independent of its content, for comparisons across images or when edges mislead. An
image on which SLIC finds a single segment (noise, a flat colour) gets the grid; the output's
extras say which each image got and how many features it had.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from cnnlens.methods._baselines import BaselineName, baseline, baseline_field
from cnnlens.methods._captum import captum_model, seeded
from cnnlens.methods.base import Method, MethodContext, MethodOutput, MethodParams
from cnnlens.methods.workload import Cost, Workload, chunked, cost_field


class SuperpixelParams(MethodParams):
    superpixels: Literal["slic", "grid"] = Field(
        "slic", description="SLIC superpixels (follow edges) or a square grid"
    )
    segments: int = Field(50, ge=2, le=1024, description="about how many features per image")
    compactness: float = Field(
        10.0, gt=0, description="SLIC: colour vs space weight (higher: squarer segments)"
    )
    baseline: BaselineName = baseline_field()
    batch_size: int = cost_field(16, "memory", "perturbed inputs per forward (bounds memory)")


def superpixel_mask(
    context: MethodContext, params: SuperpixelParams
) -> tuple[torch.Tensor, list[str]]:
    """(B, 1, H, W) long: each pixel's feature, numbered 0..n-1 per image; and the kind of
    features each image got ("slic" or "grid")."""
    x = context.x.detach()
    masks: list[torch.Tensor] = []
    kinds: list[str] = []
    for pixels in context.preprocessing.denormalize(x).clamp(0, 1).cpu():  # (C, H, W)
        kind = params.superpixels
        labels = None
        if kind == "slic":
            labels = _slic(pixels.permute(1, 2, 0).numpy(), params)
            if labels.max() == labels.min():
                kind, labels = "grid", None
        if labels is None:
            labels = _grid(pixels.shape[-2], pixels.shape[-1], params.segments)
        numbered = np.unique(labels, return_inverse=True)[1].reshape(labels.shape)
        masks.append(torch.from_numpy(numbered))
        kinds.append(kind)
    return torch.stack(masks).unsqueeze(1).to(x.device), kinds


def _slic(image: np.ndarray, params: SuperpixelParams) -> np.ndarray:
    from skimage.segmentation import slic

    gray = image.shape[-1] == 1
    return np.asarray(
        slic(
            image[..., 0] if gray else image,
            n_segments=params.segments,
            compactness=params.compactness,
            start_label=0,
            channel_axis=None if gray else -1,
        )
    )


def _grid(height: int, width: int, segments: int) -> np.ndarray:
    """Labels of a grid of at most `segments` cells, as square as the image allows."""
    rows = min(height, max(1, round(math.sqrt(segments * height / width))))
    columns = min(width, max(1, segments // rows))
    row_of = np.arange(height) * rows // height  # (H,) cell row of each pixel row
    column_of = np.arange(width) * columns // width
    return row_of[:, None] * columns + column_of[None, :]


class SampledSuperpixelParams(SuperpixelParams):
    n_samples: int = cost_field(128, "time", "random feature subsets evaluated per image")
    seed: int = Field(0, ge=0)


class SuperpixelMethod(Method):
    """A Captum perturbation method over superpixels, one image at a time: (B, 1, H, W).

    A subclass names Captum's class (`explainer`) and whether it samples feature subsets
    (`n_samples` evaluations, seeded) or removes each feature once (one evaluation each, and
    the image's own).
    """

    kind = "standalone"
    Params: ClassVar[type[MethodParams]] = SuperpixelParams
    explainer: ClassVar[Any]  # captum.attr.Lime, KernelShap or FeatureAblation
    sampled: ClassVar[bool] = False  # draws random subsets: seeded by params.seed

    def cost(self, params: Any, workload: Workload) -> Cost:
        # SLIC returns about `segments` superpixels.
        perturbed = params.n_samples if self.sampled else params.segments
        evaluations = perturbed if self.sampled else perturbed + 1
        return Cost.of(
            forwards=evaluations * workload.rows,
            peak_rows=chunked(perturbed, params.batch_size),
        )

    def compute(self, context: MethodContext, params: Any) -> MethodOutput:
        mask, kinds = superpixel_mask(context, params)
        reference = baseline(context, params.baseline)
        x, rows = context.x.detach(), context.target_rows
        options = {"n_samples": params.n_samples} if self.sampled else {}
        with captum_model(context) as model, seeded(params.seed) if self.sampled else nullcontext():
            maps = [
                self.explainer(model).attribute(
                    x[b : b + 1],
                    baselines=reference[b : b + 1],
                    additional_forward_args=(rows[b : b + 1],),
                    feature_mask=mask[b : b + 1],
                    perturbations_per_eval=params.batch_size,
                    **options,
                )
                for b in range(x.shape[0])
            ]
        features = [int(row.max()) + 1 for row in mask]
        # One value per feature, the same on every colour channel.
        output = torch.cat(maps)[:, :1].detach()
        return MethodOutput(output, {"superpixels": kinds, "features": features})
