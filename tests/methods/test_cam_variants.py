"""HiResCAM, XGrad-CAM, LayerCAM, Eigen-CAM and Ablation-CAM: equal to pytorch-grad-cam's maps
on the same layer before its min-max scaling, on seeded torchvision VGG and ResNet."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch
from pytorch_grad_cam import AblationCAM, EigenCAM, HiResCAM, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import (
    get_2d_projection,
    get_2d_projection_with_sign_correction,
)
from torch import nn

from cnnlens.methods import run_methods
from cnnlens.models import count_hooks
from tests.methods.families import TARGETS, photos, seeded

LAYERS = {"vgg11": "features.19", "resnet18": "layer4"}  # each one's last ReLU'd feature map
REFERENCES = {
    "hirescam": HiResCAM,
    "xgrad_cam": XGradCAM,
    "layer_cam": LayerCAM,
    "eigen_cam": EigenCAM,
}


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    return {name: seeded(name) for name in LAYERS}


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return photos()


def reference_cam(
    kind: Any, model: nn.Module, layer: str, x: torch.Tensor, targets: Sequence[Any]
) -> tuple[np.ndarray, np.ndarray]:
    """pytorch-grad-cam's map at the layer's resolution, ReLU'd but before its min-max scaling
    and resize, and the layer's activations; `targets`: class indices or pytorch-grad-cam's
    target objects."""
    trainable = copy.deepcopy(model).requires_grad_(True)  # its hooks need grads to flow
    module = trainable.get_submodule(layer)
    cam = kind(trainable, [module])
    try:
        outputs = cam.activations_and_grads(x)
        goals = [t if callable(t) else ClassifierOutputTarget(t) for t in targets]
        if cam.uses_gradients:
            sum(goal(output) for goal, output in zip(goals, outputs, strict=True)).backward()
        activations = cam.activations_and_grads.activations[0].numpy()
        gradients = cam.activations_and_grads.gradients[0].numpy() if cam.uses_gradients else None
        low = cam.get_cam_image(x, module, goals, activations, gradients, False)
    finally:
        cam.activations_and_grads.release()
    return np.maximum(low, 0), activations


def ours(model: nn.Module, name: str, layer: str, x: torch.Tensor, **params: Any) -> np.ndarray:
    output = run_methods(model, x, [(name, params)], target=TARGETS, layer=layer).outputs[name]
    assert output.map.shape == (2, 1, *x.shape[-2:])
    assert count_hooks(model) == 0
    return output.extras["low_resolution"][:, 0].numpy()  # type: ignore[no-any-return]


def assert_close(found: np.ndarray, expected: np.ndarray) -> None:
    scale = float(np.abs(expected).max())
    assert scale > 0
    np.testing.assert_allclose(found, expected, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("architecture", list(LAYERS))
@pytest.mark.parametrize("name", ["hirescam", "xgrad_cam", "layer_cam"])
def test_gradient_cams_equal_pytorch_grad_cam(
    models: dict[str, nn.Module], x: torch.Tensor, architecture: str, name: str
) -> None:
    model, layer = models[architecture], LAYERS[architecture]
    expected, _ = reference_cam(REFERENCES[name], model, layer, x, TARGETS)
    assert_close(ours(model, name, layer, x), expected)


@pytest.mark.parametrize("architecture", list(LAYERS))
def test_eigen_cam_equals_pytorch_grad_cams_projection(
    models: dict[str, nn.Module], x: torch.Tensor, architecture: str
) -> None:
    """The first principal component's projection, signed so its largest magnitude is
    positive (pytorch-grad-cam's sign correction); EigenCAM's own sign is LAPACK's."""
    model, layer = models[architecture], LAYERS[architecture]
    plain, activations = reference_cam(EigenCAM, model, layer, x, TARGETS)
    expected = np.maximum(get_2d_projection_with_sign_correction(activations), 0)
    found = ours(model, "eigen_cam", layer, x)
    assert_close(found, expected)
    projection = get_2d_projection(activations)
    for row in range(2):  # the same map as EigenCAM's where LAPACK's sign agrees
        if projection[row].flat[np.abs(projection[row]).argmax()] > 0:
            assert_close(found[row], plain[row])


def test_ablation_cam_equals_pytorch_grad_cam_on_resnet(
    models: dict[str, nn.Module], x: torch.Tensor
) -> None:
    """Every channel ablated, as pytorch-grad-cam does by default."""
    model = models["resnet18"]
    layer = "layer3"  # 256 channels: pytorch-grad-cam reruns the whole model per ablation
    expected, _ = reference_cam(AblationCAM, model, layer, x[:, :, :32, :32], TARGETS)
    found = ours(model, "ablation_cam", layer, x[:, :, :32, :32], channels="all", batch_size=64)
    assert_close(found, expected)


def test_ablation_cam_weights_by_hand_on_vgg(models: dict[str, nn.Module], x: torch.Tensor) -> None:
    """w_k = (y - y_k) / y for the most active channels, y_k from a forward with channel k of
    the layer zeroed by a hook of the test's own; the others weigh 0."""
    model, layer = models["vgg11"], LAYERS["vgg11"]
    run = run_methods(
        model, x[:1], [("ablation_cam", {"channels": 3, "batch_size": 2})], target=TARGETS[0],
        layer=layer,
    )  # fmt: skip
    weights = run.outputs["ablation_cam"].extras["channel_weights"][0]
    module = model.get_submodule(layer)
    with torch.no_grad():
        captured: list[torch.Tensor] = []
        handle = module.register_forward_hook(lambda m, i, o: captured.append(o.clone()))
        score = model(x[:1])[0, TARGETS[0]]
        handle.remove()
        chosen = captured[0][0].mean(dim=(1, 2)).topk(3).indices
        for channel in range(captured[0].shape[1]):
            if channel not in chosen:
                assert weights[channel] == 0
                continue

            def zero(m: nn.Module, i: Any, output: torch.Tensor, k: int = channel) -> torch.Tensor:
                output = output.clone()
                output[:, k] = 0
                return output

            handle = module.register_forward_hook(zero)
            ablated = model(x[:1])[0, TARGETS[0]]
            handle.remove()
            expected = (score - ablated) / score
            torch.testing.assert_close(weights[channel], expected, rtol=1e-4, atol=1e-6)


def test_ablation_cam_falls_back_where_the_layer_cannot_broadcast() -> None:
    """A model that concatenates a tensor from before the layer with one after it cannot run
    the ablations on one image: it runs the image once per ablation, with the same result."""

    class Concat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.relu = nn.ReLU()
            self.fc = nn.Linear(7, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            features = self.relu(self.conv(x))
            return self.fc(torch.cat([x, features], dim=1).mean(dim=(2, 3)))

    torch.manual_seed(0)
    model = Concat().eval()
    x = torch.randn(1, 3, 8, 8)
    run = run_methods(model, x, [("ablation_cam", {"channels": "all"})], target=1, layer="relu")
    weights = run.outputs["ablation_cam"].extras["channel_weights"][0]
    with torch.no_grad():
        features = model.relu(model.conv(x))
        score = model(x)[0, 1]
        for channel in range(4):
            ablated = features.clone()
            ablated[:, channel] = 0
            pooled = torch.cat([x, ablated], dim=1).mean(dim=(2, 3))
            expected = (score - model.fc(pooled)[0, 1]) / score
            torch.testing.assert_close(weights[channel], expected, rtol=1e-4, atol=1e-6)
    assert count_hooks(model) == 0
