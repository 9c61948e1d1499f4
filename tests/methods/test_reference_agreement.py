"""Agreement with independent references on the real default model and scikit-image photos."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from cnnlens.methods import attribute, run_methods
from cnnlens.models import LoadedModel
from tests.conftest import EGYPTIAN_CAT, ESPRESSO, pearson


class _PaperReLU6(torch.autograd.Function):
    """min(max(x, 0), 6) with the backward written out from the papers, for one rule."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, rule: str) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.rule = rule
        return x.clamp(0, 6)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        forward_mask = ((x > 0) & (x < 6)).to(grad.dtype)
        if ctx.rule == "guided":  # Springenberg et al. 2015: both masks
            return grad.clamp(min=0) * forward_mask, None
        return grad.clamp(min=0), None  # Zeiler & Fergus 2014: rectify the backward signal only


class _PaperActivation(nn.Module):
    def __init__(self, rule: str) -> None:
        super().__init__()
        self.rule = rule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _PaperReLU6.apply(x, self.rule)


def paper_reference(model: nn.Module, x: torch.Tensor, target: int, rule: str) -> torch.Tensor:
    """A slow, independent reference: a copy of the model with every ReLU6 module replaced."""
    reference = copy.deepcopy(model)
    for module in list(reference.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(module, child_name, _PaperActivation(rule))
    assert not any(isinstance(m, nn.ReLU6) for m in reference.modules())
    inputs = x.clone().requires_grad_(True)
    reference(inputs)[0, target].backward()
    assert inputs.grad is not None
    return inputs.grad


@pytest.mark.parametrize(
    ("method", "rule"), [("guided_backprop", "guided"), ("deconvnet", "deconv")]
)
def test_relu6_rules_match_the_paper_reference(
    default_model: LoadedModel, chelsea_batch: torch.Tensor, method: str, rule: str
) -> None:
    ours = attribute(method, default_model, chelsea_batch, target=EGYPTIAN_CAT)
    reference = paper_reference(default_model.module, chelsea_batch, EGYPTIAN_CAT, rule)
    assert pearson(ours, reference) >= 0.98
    torch.testing.assert_close(ours, reference, rtol=1e-3, atol=1e-5)


def test_saliency_matches_captum(default_model: LoadedModel, coffee_batch: torch.Tensor) -> None:
    from captum.attr import Saliency

    ours = attribute("saliency", default_model, coffee_batch, target=ESPRESSO)
    captum = Saliency(default_model.module).attribute(
        coffee_batch.clone().requires_grad_(True), target=ESPRESSO, abs=True
    )
    assert pearson(ours, captum.amax(dim=1, keepdim=True)) >= 0.98


@pytest.mark.parametrize("layer", [None, "blocks.5"])
def test_grad_cam_matches_captum(
    default_model: LoadedModel, chelsea_batch: torch.Tensor, layer: str | None
) -> None:
    from captum.attr import LayerAttribution, LayerGradCam

    ours = attribute("grad_cam", default_model, chelsea_batch, target=EGYPTIAN_CAT, layer=layer)
    module = default_model.module.get_submodule(layer or default_model.default_layer)
    low = LayerGradCam(default_model.module, module).attribute(
        chelsea_batch, target=EGYPTIAN_CAT, relu_attributions=True
    )
    captum = LayerAttribution.interpolate(low, tuple(chelsea_batch.shape[-2:]), "bilinear")
    assert pearson(ours, captum) >= 0.98


def test_grad_cam_matches_pytorch_grad_cam(
    default_model: LoadedModel, coffee_batch: torch.Tensor
) -> None:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    ours = attribute("grad_cam", default_model, coffee_batch, target=ESPRESSO)
    with GradCAM(default_model.module, target_layers=[default_model.module.bn2]) as reference:
        theirs = reference(
            coffee_batch.clone().requires_grad_(True), targets=[ClassifierOutputTarget(ESPRESSO)]
        )
    assert pearson(ours, theirs) >= 0.98


def test_cam_equals_grad_cam_on_a_gap_linear_head(
    default_model: LoadedModel, chelsea_batch: torch.Tensor
) -> None:
    """With logits = W GAP(A) + b, Grad-CAM's weights are W_c / (h w): the maps are proportional."""
    result = run_methods(default_model, chelsea_batch, [("cam", {}), ("grad_cam", {})])
    cam = result.outputs["cam"].map
    grad_cam = result.outputs["grad_cam"].map
    torch.testing.assert_close(cam / cam.max(), grad_cam / grad_cam.max(), rtol=1e-4, atol=1e-5)


def _peak(heatmap: torch.Tensor) -> tuple[int, int]:
    flat = int(heatmap[0, 0].argmax())
    return divmod(flat, heatmap.shape[-1])


def test_grad_cam_peaks_on_the_cat(default_model: LoadedModel, chelsea_batch: torch.Tensor) -> None:
    """chelsea(): the cat fills the centre-left; the background is the right and bottom edges."""
    heatmap = attribute("grad_cam", default_model, chelsea_batch, target=EGYPTIAN_CAT)
    row, col = _peak(heatmap)
    # Cat's head and body in chelsea() (451x300 photo) lie within x < 70%, 10% < y < 95%.
    assert col < 0.7 * 224 and 0.1 * 224 < row < 0.95 * 224
    inside = heatmap[0, 0, 22:213, :157].mean()
    outside = heatmap[0, 0, :, 180:].mean()
    assert inside > 2 * outside


def test_grad_cam_peaks_on_the_cup(default_model: LoadedModel, coffee_batch: torch.Tensor) -> None:
    """coffee(): the cup of espresso sits in the upper middle of the 600x400 photo."""
    heatmap = attribute("grad_cam", default_model, coffee_batch, target=ESPRESSO)
    row, col = _peak(heatmap)
    # The cup's rim spans x in [170, 410], y in [15, 230] of 600x400.
    assert 170 / 600 * 224 <= col <= 410 / 600 * 224
    assert 15 / 400 * 224 <= row <= 230 / 400 * 224
    corners = np.array([heatmap[0, 0, :30, :30].mean(), heatmap[0, 0, -30:, -30:].mean()])
    assert float(heatmap.max()) > 4 * corners.max()
