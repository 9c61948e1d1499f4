"""Layer inventory: receptive fields by the recursive formula, default layers, compatibility."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch.nn.functional as F
from torch import nn

from cnnlens.models import LoadedModel, inspect_layers, load_model


def test_receptive_field_formula_on_a_chain() -> None:
    """r = 1 + sum (k_l - 1) prod_{i<l} s_i; dilation d turns k into d (k - 1) + 1."""
    model = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 4, 3, stride=2, padding=1),  # r = 3, j = 2
            pool=nn.MaxPool2d(2),  # r = 3 + 1 * 2 = 5, j = 4
            conv2=nn.Conv2d(4, 4, 3, dilation=2, padding=2),  # k' = 5: r = 5 + 4 * 4 = 21
            conv3=nn.Conv2d(4, 4, 5, stride=3, padding=2),  # r = 21 + 4 * 4 = 37, j = 12
            gap=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(4, 2),
        )
    )
    inventory = inspect_layers(model, (64, 64))
    fields = {layer.name: (layer.receptive_field, layer.stride) for layer in inventory.layers}
    assert fields["conv1"] == (3, 2)
    assert fields["pool"] == (5, 4)
    assert fields["conv2"] == (21, 4)
    assert fields["conv3"] == (37, 12)
    assert fields["fc"] == (None, None)  # global
    assert inventory.default_layer == "conv3"
    assert inventory.compatibility.gap_linear_head
    assert inventory.get("conv3").output_shape == [4, 6, 6]  # type: ignore[union-attr]


def test_branches_take_the_larger_field() -> None:
    class TwoBranches(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wide = nn.Conv2d(3, 2, 7, padding=3)
            self.narrow = nn.Conv2d(3, 2, 1)
            self.head = nn.Linear(2, 2)

        def forward(self, x):  # type: ignore[no-untyped-def]
            mixed = F.relu(self.wide(x) + self.narrow(x))
            return self.head(mixed.mean(dim=(2, 3)))

    inventory = inspect_layers(TwoBranches(), (16, 16))
    assert inventory.get("wide").receptive_field == 7  # type: ignore[union-attr]
    assert inventory.get("narrow").receptive_field == 1  # type: ignore[union-attr]
    assert inventory.compatibility.functional_relu_calls == 1
    assert inventory.compatibility.guided_methods


@pytest.mark.parametrize(
    ("name", "default_layer", "field", "gap_head"),
    [
        ("torchvision:resnet50", "layer4", 427, True),  # the published ResNet-50 value
        ("torchvision:vgg16", "features", 212, False),  # conv5_3 = 196, after pool5 = 212
    ],
)
def test_known_architectures(name: str, default_layer: str, field: int, gap_head: bool) -> None:
    model = load_model(name, weights="none")
    layer = model.layers.get(model.default_layer)
    assert model.default_layer == default_layer
    assert layer is not None and layer.receptive_field == field and layer.stride == 32
    assert model.layers.compatibility.gap_linear_head is gap_head
    assert model.layers.compatibility.guided_methods


def test_default_model_report(default_model: LoadedModel) -> None:
    report = default_model.layers.compatibility
    assert report.relu6_modules == 33 and report.inplace_relu_modules == 33
    assert report.gap_linear_head and report.classifier == "classifier"
    assert report.guided_methods and not report.unsupported_activations
    bn2 = default_model.layers.get("bn2")
    assert bn2 is not None and bn2.output_shape == [1280, 7, 7] and bn2.stride == 32


def test_silu_models_are_flagged() -> None:
    report = load_model("timm:efficientnet_b0", weights="none").layers.compatibility
    assert not report.guided_methods
    assert report.unsupported_activations
    assert "refused" in report.notes[0]
