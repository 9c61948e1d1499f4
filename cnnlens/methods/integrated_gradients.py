"""Integrated gradients (Sundararajan, Taly & Yan 2017)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from cnnlens.methods._baselines import BaselineName, baseline, baseline_field
from cnnlens.methods._batched_gradients import (
    BatchedGradientMethod,
    BatchedGradientParams,
    mean_input_gradients,
)
from cnnlens.methods.base import MethodContext, MethodOutput, register
from cnnlens.methods.workload import cost_field


class IntegratedGradientsParams(BatchedGradientParams):
    steps: int = cost_field(32, "time", "points on the path")
    rule: Literal["gausslegendre", "riemann_trapezoid"] = "gausslegendre"
    baseline: BaselineName = baseline_field()


@register
class IntegratedGradients(BatchedGradientMethod):
    """IG_i(x) = (x_i - x'_i) * integral_0^1 dS_c(x' + a (x - x'))/dx_i da.

    Sundararajan et al., "Axiomatic Attribution for Deep Networks", ICML 2017, eq. (1), with
    Gauss-Legendre or trapezoid quadrature. Completeness: sum_i IG_i ~= S_c(x) - S_c(x').
    Shapes: x (B, 3, H, W) -> (B, 3, H, W), signed.
    """

    name = "integrated_gradients"
    title = "Integrated gradients"
    paper = "Sundararajan et al. 2017, arXiv:1703.01365"
    Params = IntegratedGradientsParams
    resident_inputs = 3  # x, the baseline and the sum

    def points(self, params: IntegratedGradientsParams) -> int:
        return params.steps

    def compute(self, context: MethodContext, params: IntegratedGradientsParams) -> MethodOutput:
        x = context.x.detach()
        reference = baseline(context, params.baseline)
        alphas, weights = _quadrature(params.rule, params.steps)
        delta = x - reference

        def point(s: int) -> torch.Tensor:
            return reference + float(alphas[s]) * delta

        weights_tensor = torch.as_tensor(weights, dtype=x.dtype, device=x.device)
        (path_gradient,) = mean_input_gradients(
            context.model,
            x,
            point,
            len(alphas),
            context.target,
            weights_tensor,
            params.batch_size,
        )
        return MethodOutput(delta * path_gradient, {"baseline": reference})


def _quadrature(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Points in [0, 1] and their weights (summing to 1)."""
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1) / 2, weights / 2
    if steps == 1:
        return np.array([1.0]), np.array([1.0])
    alphas = np.linspace(0.0, 1.0, steps)
    weights = np.full(steps, 1.0 / (steps - 1))
    weights[[0, -1]] /= 2
    return alphas, weights
