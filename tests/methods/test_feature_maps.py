"""Feature maps: a layer's activations, checked against hand-computed conv outputs."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from cnnlens.errors import IncompatibleModelError
from cnnlens.methods import MethodOutput, run_methods
from cnnlens.models import LoadedModel, count_hooks
from tests.tiny import pre_activations, tiny_cnn, tiny_input


def feature_maps(
    model: torch.nn.Module | LoadedModel, x: torch.Tensor, layer: str | None, top_k: int = 16
) -> MethodOutput:
    return run_methods(model, x, [("feature_maps", {"top_k": top_k})], layer=layer).outputs[
        "feature_maps"
    ]


def test_relu_layer_activations_by_hand() -> None:
    output = feature_maps(tiny_cnn(), tiny_input(), "relu")
    # a = [[0.35, -1.05], [3, 1.05]] and [[-1.8, 4.4], [0.5, -3.1]] (tests.tiny), then ReLU.
    expected = np.array([[[0.35, 0.0], [3.0, 1.05]], [[0.0, 4.4], [0.5, 0.0]]])
    np.testing.assert_allclose(expected, np.maximum(pre_activations(), 0))
    np.testing.assert_allclose(output.extras["activations"][0].numpy(), expected, atol=1e-6)
    means = [(0.35 + 3.0 + 1.05) / 4, (4.4 + 0.5) / 4]  # 1.1, 1.225
    np.testing.assert_allclose(output.extras["channel_means"][0].numpy(), means, atol=1e-6)
    assert output.extras["top_channels"].tolist() == [[1, 0]]  # clamped to C = 2, strongest first
    # The layer keeps the input's 2x2 grid, so upsampling is the identity.
    np.testing.assert_allclose(output.map[0, 0].numpy(), expected.mean(axis=0), atol=1e-6)
    assert output.map.shape == (1, 1, 2, 2)


def test_conv_layer_is_captured_before_the_relu() -> None:
    output = feature_maps(tiny_cnn(), tiny_input(), "conv", top_k=1)
    np.testing.assert_allclose(
        output.extras["activations"][0].numpy(), pre_activations(), atol=1e-6
    )
    # Before the ReLU the means are 3.35 / 4 = 0.8375 and 0 / 4 = 0: channel 0 leads now.
    np.testing.assert_allclose(output.extras["channel_means"][0].numpy(), [0.8375, 0.0], atol=1e-6)
    assert output.extras["top_channels"].tolist() == [[0]]


def test_a_one_by_one_layer_upsamples_to_a_constant_map() -> None:
    output = feature_maps(tiny_cnn(), tiny_input(), "pool")
    pooled = np.maximum(pre_activations(), 0).mean(axis=(1, 2))  # (2,)
    np.testing.assert_allclose(output.map.numpy(), np.full((1, 1, 2, 2), pooled.mean()), atol=1e-6)


def test_bilinear_upsampling_by_hand() -> None:
    model = nn.Sequential(
        OrderedDict(pool=nn.AvgPool2d(2), relu=nn.ReLU(), flatten=nn.Flatten(), fc=nn.Linear(12, 2))
    )
    x = torch.zeros(1, 3, 4, 4)
    x[:, :, :2, 2:] = 3.0  # channel mean after pooling: [[0, 3], [0, 0]]
    x[:, 0, 2:, 2:] = 12.0  # [[0, 3], [0, 4]]
    output = feature_maps(model, x, "relu")
    # align_corners=False, 2 -> 4: [a, b] -> [a, (3a + b) / 4, (a + 3b) / 4, b] along each axis.
    rows = np.array([[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    expected = rows @ np.array([[0.0, 3.0], [0.0, 4.0]]) @ rows.T
    np.testing.assert_allclose(output.map[0, 0].numpy(), expected, atol=1e-6)


def test_a_flat_layer_is_refused() -> None:
    model = tiny_cnn()
    with pytest.raises(IncompatibleModelError):
        feature_maps(model, tiny_input(), "fc")
    assert count_hooks(model) == 0


def test_default_layer_on_the_real_model(
    default_model: LoadedModel, chelsea_batch: torch.Tensor, coffee_batch: torch.Tensor
) -> None:
    x = torch.cat([chelsea_batch, coffee_batch])
    x_before = x.clone()
    output = feature_maps(default_model, x, None, top_k=5)
    with torch.no_grad():  # timm's forward_features ends at the default layer, bn2
        reference = default_model.module.forward_features(x)  # type: ignore[operator]
    torch.testing.assert_close(output.extras["activations"], reference)
    means = reference.mean(dim=(2, 3))
    torch.testing.assert_close(output.extras["channel_means"], means)
    top = output.extras["top_channels"]
    assert top.shape == (2, 5)
    for row in range(2):
        assert top[row].tolist() == means[row].argsort(descending=True)[:5].tolist()
    assert output.map.shape == (2, 1, 224, 224)
    torch.testing.assert_close(output.extras["low_resolution"], reference.mean(dim=1, keepdim=True))
    assert torch.equal(x, x_before)
    assert count_hooks(default_model.module) == 0
    assert all(p.grad is None for p in default_model.module.parameters())
