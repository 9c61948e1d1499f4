"""Guided Grad-CAM (Selvaraju et al. 2017): guided backprop x upsampled Grad-CAM."""

from __future__ import annotations

from cnnlens.methods.base import (
    INPUT,
    Method,
    MethodContext,
    MethodOutput,
    Requirements,
    register,
)
from cnnlens.methods.cam_base import CamParams
from cnnlens.methods.grad_cam import GradCam
from cnnlens.methods.workload import Cost, Workload
from cnnlens.models.hooks import ReluRule


@register
class GuidedGradCam(Method):
    """G^c = GuidedBackprop^c * Upsample(L^c_Grad-CAM), element-wise per colour channel.

    Selvaraju et al., "Grad-CAM", ICCV 2017, section 3.1. Shapes: -> (B, 3, H, W).
    """

    name = "guided_grad_cam"
    title = "Guided Grad-CAM"
    paper = "Selvaraju et al. 2017, arXiv:1610.02391"
    Params = CamParams
    uses_layer = True

    def cost(self, params: CamParams, workload: Workload) -> Cost:
        # Grad-CAM's backward to the layer and guided backprop's to the input.
        rows = workload.rows
        return Cost.of(backwards=2 * rows, peak_rows=rows, gradient="input")

    def requirements(self, params: CamParams, layer: str) -> Requirements:
        grad_cam = GradCam().requirements(params, layer)
        return Requirements(
            layers=grad_cam.layers,
            gradients=grad_cam.gradients | {(INPUT, ReluRule.GUIDED)},
        )

    def compute(self, context: MethodContext, params: CamParams) -> MethodOutput:
        cam = GradCam().compute(context, params).map  # (B, 1, H, W)
        guided = context.shared.input_gradient(ReluRule.GUIDED)  # (B, 3, H, W)
        return MethodOutput(guided * cam, {"grad_cam": cam})
