"""Kernel SHAP over superpixels (Lundberg & Lee 2017), through Captum."""

from __future__ import annotations

from captum.attr import KernelShap as CaptumKernelShap

from cnnlens.methods._superpixels import SampledSuperpixelParams, SuperpixelMethod
from cnnlens.methods.base import register


@register
class KernelShap(SuperpixelMethod):
    """phi = argmin_phi sum_z pi(z') (S(z) - phi_0 - sum_i phi_i z'_i)^2 with the Shapley kernel
    pi(z') = (M - 1) / (C(M, |z'|) |z'| (M - |z'|)): Shapley values of the superpixels.

    Lundberg & Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017,
    theorem 2; captum.attr.KernelShap, seeded. Each pixel gets its superpixel's value.
    Shapes: x (B, 3, H, W) -> (B, 1, H, W).
    """

    name = "kernel_shap"
    title = "Kernel SHAP"
    paper = "Lundberg & Lee 2017, arXiv:1705.07874"
    Params = SampledSuperpixelParams
    explainer = CaptumKernelShap
    sampled = True
