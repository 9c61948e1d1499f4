"""Grad-CAM of a box equals pytorch-grad-cam's GradCAM with FasterRCNNBoxScoreTarget on the
same seeded torchvision Faster R-CNN, set up as pytorch-grad-cam's Faster R-CNN tutorial sets
it up: the backbone's feature pyramid as the layer, through its `fasterrcnn_reshape_transform`,
and its box target."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients
from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget
from pytorch_grad_cam.utils.reshape_transforms import fasterrcnn_reshape_transform
from torch import nn

import cnnlens
from cnnlens.models import count_hooks
from tests.conftest import pearson
from tests.detection.detectors import seeded_fasterrcnn


class LevelGradients(ActivationsAndGradients):  # type: ignore[misc]
    """pytorch-grad-cam's hooks, with the gradient hooked on each level of a dict output: its
    own `save_gradient` skips outputs without `requires_grad`, so a dict layer (an FPN's)
    never gets one. The levels' gradients go through the reshape_transform, as its own hook
    sends a tensor layer's (levels no score reaches, such as "pool", get zeros)."""

    def save_gradient(self, module: nn.Module, inputs: Any, output: Mapping[str, Any]) -> None:
        self.levels = output
        for key, value in output.items():
            value.register_hook(lambda grad, key=key: self.level_grads.__setitem__(key, grad))

    @property  # type: ignore[override]
    def gradients(self) -> list[torch.Tensor]:
        if not getattr(self, "levels", None):
            return []
        grads = {k: self.level_grads.get(k, torch.zeros_like(v)) for k, v in self.levels.items()}
        return [self.reshape_transform(grads).cpu().detach()]

    @gradients.setter
    def gradients(self, value: list[torch.Tensor]) -> None:
        self.level_grads: dict[str, torch.Tensor] = {}


@pytest.fixture(scope="module")
def setup() -> tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor, int]:
    """The detector (to explain), an identical copy (the reference's), astronaut() as the
    model sees it, and the first detection's box and label."""
    from skimage import data

    detector = seeded_fasterrcnn()
    reference = copy.deepcopy(detector)  # pytorch-grad-cam needs parameters with gradients
    model = cnnlens.wrap(detector)
    x = model.preprocessing(Image.fromarray(data.astronaut()))
    with torch.no_grad():
        found = detector(x)[0]
    return detector, reference, x, found["boxes"][0], int(found["labels"][0])


def test_grad_cam_of_a_box_equals_pytorch_grad_cam_on_the_feature_pyramid(
    setup: tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor, int],
) -> None:
    detector, reference, x, box, label = setup
    ours = cnnlens.attribute("grad_cam", cnnlens.wrap(detector), x, target=label, box=box)
    cam = GradCAM(reference, [reference.backbone], reshape_transform=fasterrcnn_reshape_transform)
    cam.activations_and_grads.release()
    cam.activations_and_grads = LevelGradients(
        reference, [reference.backbone], fasterrcnn_reshape_transform
    )
    theirs = cam(x, targets=[FasterRCNNBoxScoreTarget([label], [box.numpy()])])[0]
    assert np.ptp(theirs) > 0
    assert pearson(ours[0, 0], theirs) >= 0.99
    assert count_hooks(detector) == 0


def test_grad_cam_of_a_box_equals_pytorch_grad_cam_on_one_level(
    setup: tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor, int],
) -> None:
    detector, reference, x, box, label = setup
    layer = "backbone.fpn.layer_blocks.0"
    ours = cnnlens.attribute(
        "grad_cam", cnnlens.wrap(detector), x, target=label, box=box, layer=layer
    )
    cam = GradCAM(reference, [dict(reference.named_modules())[layer]])
    theirs = cam(x, targets=[FasterRCNNBoxScoreTarget([label], [box.numpy()])])[0]
    assert np.ptp(theirs) > 0
    assert pearson(ours[0, 0], theirs) >= 0.99
