"""The reference implementations the benchmark compares with: captum and pytorch-grad-cam."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

Call = Callable[[], Any]


def _quiet() -> None:
    warnings.filterwarnings("ignore", module="captum")
    warnings.filterwarnings("ignore", module="pytorch_grad_cam")


def captum_layer_grad_cam(model: nn.Module, layer: str, x: torch.Tensor, target: int) -> Call:
    from captum.attr import LayerGradCam

    _quiet()
    method = LayerGradCam(model, model.get_submodule(layer))
    return lambda: method.attribute(x, target=target, relu_attributions=True)


def pytorch_grad_cam(model: nn.Module, layer: str, x: torch.Tensor, target: int) -> Call:
    """pytorch-grad-cam on a trainable copy: its hooks need activations that require grad."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    _quiet()
    trainable = copy.deepcopy(model).eval().requires_grad_(True)
    cam = GradCAM(model=trainable, target_layers=[trainable.get_submodule(layer)])
    targets = [ClassifierOutputTarget(target)]
    return lambda: cam(input_tensor=x, targets=targets)


def captum_six(model: nn.Module, layer: str, x: torch.Tensor, target: int) -> Call:
    """Saliency, GuidedBackprop, Deconvolution, LayerGradCam, GuidedGradCam, LayerActivation."""
    from captum.attr import (
        Deconvolution,
        GuidedBackprop,
        GuidedGradCam,
        LayerActivation,
        LayerGradCam,
        Saliency,
    )

    _quiet()
    module = model.get_submodule(layer)
    saliency, guided, deconv = Saliency(model), GuidedBackprop(model), Deconvolution(model)
    grad_cam, guided_grad_cam = LayerGradCam(model, module), GuidedGradCam(model, module)
    activation = LayerActivation(model, module)

    def run() -> list[torch.Tensor]:
        return [
            saliency.attribute(x, target=target, abs=True),
            guided.attribute(x, target=target),
            deconv.attribute(x, target=target),
            grad_cam.attribute(x, target=target, relu_attributions=True),
            guided_grad_cam.attribute(x, target=target),
            activation.attribute(x),
        ]

    return run


def captum_occlusion(
    model: nn.Module, x: torch.Tensor, target: int, window: int, stride: int, batch: int
) -> Call:
    """captum's Occlusion over the same windows, `batch` perturbations per forward.

    captum attributes original minus occluded output; on log-softmax outputs that is the
    change of -log P(target), the quantity cnnlens maps, so the two maps are comparable.
    """
    from captum.attr import Occlusion

    _quiet()
    occlusion = Occlusion(lambda inputs: torch.log_softmax(model(inputs), dim=1))
    return lambda: occlusion.attribute(
        x,
        sliding_window_shapes=(x.shape[1], window, window),
        strides=(x.shape[1], stride, stride),
        target=target,
        baselines=0.0,
        perturbations_per_eval=batch,
    )
