"""Eigen-CAM (Muhammad & Yeasin 2020)."""

from __future__ import annotations

from typing import Any

import torch

from cnnlens.methods.base import MethodContext, register
from cnnlens.methods.cam_base import CamMethod
from cnnlens.methods.workload import Cost, Workload


@register
class EigenCam(CamMethod):
    """L = ReLU((A - mean) v_1): the layer's activations at each location, centred over the
    locations and projected on their first principal component v_1 (no gradient, no class:
    the same map for every target).

    Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal Components", IJCNN
    2020, eq. (5)-(6); pytorch-grad-cam's EigenCAM. The sign of v_1 is arbitrary: it is
    chosen so that the projection's largest magnitude is positive (pytorch-grad-cam's
    `get_2d_projection_with_sign_correction`, Chung & Ying 2025, eq. 13).
    Shapes: activations (B, C, h, w) -> map (B, 1, H, W).
    """

    name = "eigen_cam"
    title = "Eigen-CAM"
    paper = "Muhammad & Yeasin 2020, arXiv:2008.00299"

    def cost(self, params: Any, workload: Workload) -> Cost:
        return Cost.of(peak_rows=workload.rows, gradient="layer")  # the shared forward only

    def class_map(
        self, context: MethodContext, params: Any, activations: torch.Tensor
    ) -> torch.Tensor:
        batch, channels, height, width = activations.shape
        located = activations.detach().reshape(batch, channels, height * width).transpose(1, 2)
        centred = located - located.mean(dim=1, keepdim=True)  # (B, hw, C)
        centred = torch.nan_to_num(centred)
        _, _, components = torch.linalg.svd(centred, full_matrices=False)  # (B, k, C)
        projection = torch.matmul(centred, components[:, 0].unsqueeze(2)).squeeze(2)  # (B, hw)
        flip = projection.amin(dim=1).abs() > projection.amax(dim=1).abs()
        projection = torch.where(flip.unsqueeze(1), -projection, projection)
        return projection.view(batch, 1, height, width)
