"""Guided backpropagation (Springenberg et al. 2015)."""

from __future__ import annotations

from cnnlens.methods._relu_rule_projection import ProjectionMethod
from cnnlens.methods.base import register
from cnnlens.models.hooks import ReluRule


@register
class GuidedBackprop(ProjectionMethod):
    """R_l = (f_l > 0) * (R_{l+1} > 0) * R_{l+1} at every ReLU, then the input gradient.

    Springenberg et al., "Striving for Simplicity", ICLR workshop 2015, fig. 1.
    Shapes: x (B, 3, H, W) -> (B, 3, H, W). Refused on models with SiLU/GELU activations.
    """

    name = "guided_backprop"
    title = "Guided backpropagation"
    paper = "Springenberg et al. 2015, arXiv:1412.6806"
    rule = ReluRule.GUIDED
