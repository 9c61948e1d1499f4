"""Deconvnet projections (Zeiler & Fergus 2014)."""

from __future__ import annotations

from cnnlens.methods._relu_rule_projection import ProjectionMethod
from cnnlens.methods.base import register
from cnnlens.models.hooks import ReluRule


@register
class Deconvnet(ProjectionMethod):
    """R_l = max(R_{l+1}, 0) at every ReLU (rectify the reconstruction, ignore the forward
    sign), transposed filters elsewhere: the input gradient under the deconv rule.

    Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014, sec. 2.1.
    Shapes: x (B, 3, H, W) -> (B, 3, H, W). Refused on models with SiLU/GELU activations.
    """

    name = "deconvnet"
    title = "Deconvnet"
    paper = "Zeiler & Fergus 2014, arXiv:1311.2901"
    rule = ReluRule.DECONV
