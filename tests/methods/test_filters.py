"""Filters: a conv layer's weights, raw and as RGB tiles in [0, 1]."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from cnnlens.errors import IncompatibleModelError, InvalidParamsError, LayerNotFoundError
from cnnlens.methods import MethodOutput, run_methods
from cnnlens.models import LoadedModel, count_hooks
from tests.tiny import CONV, tiny_cnn, tiny_input


def filters(
    model: nn.Module | LoadedModel, layer: str | None = None, x: torch.Tensor | None = None,
    **params: Any,
) -> MethodOutput:  # fmt: skip
    x = tiny_input() if x is None else x
    return run_methods(model, x, [("filters", params)], layer=layer).outputs["filters"]


def test_weights_tiles_and_norms_by_hand() -> None:
    output = filters(tiny_cnn(), layer="conv")
    np.testing.assert_allclose(output.map.numpy().reshape(2, 3), CONV)
    # Per filter, (w - min) / (max - min): [1, -2, 0.5] -> [1, 0, 5/6]; [-1, 1, 2] -> [0, 2/3, 1].
    tiles = output.extras["rgb_tiles"].numpy().reshape(2, 3)
    np.testing.assert_allclose(tiles, [[1.0, 0.0, 5 / 6], [0.0, 2 / 3, 1.0]], atol=1e-6)
    norms = output.extras["norms"].numpy()
    np.testing.assert_allclose(norms, [math.sqrt(5.25), math.sqrt(6.0)], atol=1e-6)
    assert output.extras["layer"] == "conv"
    assert output.extras["bias"] is None


def test_layer_wide_normalization() -> None:
    output = filters(tiny_cnn(), layer="conv", normalize="layer")
    tiles = output.extras["rgb_tiles"].numpy().reshape(2, 3)  # one scale: min -2, max 2
    np.testing.assert_allclose(tiles, [[0.75, 0.0, 0.625], [0.25, 0.75, 1.0]], atol=1e-6)


def test_a_non_conv_layer_falls_back_to_the_first_conv() -> None:
    output = filters(tiny_cnn(), layer="relu")
    assert output.extras["layer"] == "conv"
    np.testing.assert_allclose(output.map.numpy().reshape(2, 3), CONV)


def test_constant_filters_are_mid_gray_and_deep_filters_have_no_tiles() -> None:
    constant, deep = nn.Conv2d(3, 2, 1), nn.Conv2d(2, 4, 3, padding=1)
    model = nn.Sequential(constant, deep, nn.Flatten())
    with torch.no_grad():
        constant.weight.fill_(0.3)
    first = filters(model, x=torch.zeros(1, 3, 4, 4), conv="0")
    assert torch.equal(first.extras["rgb_tiles"], torch.full((2, 3, 1, 1), 0.5))
    second = filters(model, x=torch.zeros(1, 3, 4, 4), conv="1")
    assert second.map.shape == (4, 2, 3, 3) and second.extras["rgb_tiles"] is None
    torch.testing.assert_close(second.extras["bias"], deep.bias)


def test_bad_conv_names_are_clear_errors() -> None:
    with pytest.raises(InvalidParamsError, match="not a Conv2d"):
        filters(tiny_cnn(), conv="relu")
    with pytest.raises(LayerNotFoundError):
        filters(tiny_cnn(), conv="nope")
    with pytest.raises(IncompatibleModelError):
        no_conv = nn.Sequential(nn.ReLU(), nn.Flatten(), nn.Linear(12, 2))
        filters(no_conv, x=torch.zeros(1, 3, 2, 2))


def test_first_layer_of_the_real_model(
    default_model: LoadedModel, chelsea_batch: torch.Tensor
) -> None:
    module = default_model.module
    stem = module.get_submodule("conv_stem")
    assert isinstance(stem, nn.Conv2d)
    output = filters(default_model, x=chelsea_batch)  # default layer bn2 is not a conv
    assert output.extras["layer"] == "conv_stem"
    torch.testing.assert_close(output.map, stem.weight)
    tiles = output.extras["rgb_tiles"]
    assert tiles.shape == (32, 3, 3, 3)
    assert torch.allclose(tiles.flatten(1).amin(dim=1), torch.zeros(32))
    assert torch.allclose(tiles.flatten(1).amax(dim=1), torch.ones(32))
    output.map.zero_()  # a copy: the model's weights stay as they were
    assert stem.weight.abs().sum() > 0
    head = filters(default_model, x=chelsea_batch, conv="conv_head")
    assert head.map.shape == (1280, 320, 1, 1) and head.extras["rgb_tiles"] is None
    assert count_hooks(module) == 0
