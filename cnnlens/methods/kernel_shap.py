"""Kernel SHAP over superpixels (Lundberg & Lee 2017), through Captum."""

from __future__ import annotations

import torch
from captum.attr import KernelShap as CaptumKernelShap

from cnnlens.methods._scores import ScoredModel
from cnnlens.methods._superpixels import SampledSuperpixelParams, SuperpixelMethod
from cnnlens.methods.base import register
from cnnlens.methods.workload import Cost, Workload, chunked


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
    sampled = True

    def cost(self, params: SampledSuperpixelParams, workload: Workload) -> Cost:
        return Cost.of(
            forwards=params.n_samples * workload.rows,
            peak_rows=chunked(params.n_samples, params.batch_size),
        )

    def explain_one(
        self,
        model: ScoredModel,
        x: torch.Tensor,
        rows: torch.Tensor,
        reference: torch.Tensor,
        mask: torch.Tensor,
        params: SampledSuperpixelParams,
    ) -> torch.Tensor:
        return CaptumKernelShap(model).attribute(  # type: ignore[no-any-return]
            x,
            baselines=reference,
            additional_forward_args=(rows,),
            feature_mask=mask,
            n_samples=params.n_samples,
            perturbations_per_eval=params.batch_size,
        )
