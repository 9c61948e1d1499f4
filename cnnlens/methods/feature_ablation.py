"""Feature ablation over superpixels (occlusion by segment), through Captum."""

from __future__ import annotations

from captum.attr import FeatureAblation as CaptumFeatureAblation

from cnnlens.methods._superpixels import SuperpixelMethod, SuperpixelParams
from cnnlens.methods.base import register


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
    Params = SuperpixelParams
    explainer = CaptumFeatureAblation
    sampled = False
