"""Gradient methods on a tiny CNN against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlens.errors import InvalidParamsError
from cnnlens.methods import attribute, run_methods
from tests import tiny


@pytest.mark.parametrize("target", [0, 1])
def test_saliency_is_max_abs_input_gradient(target: int) -> None:
    expected = np.abs(tiny.input_gradient(target, "gradient")).max(axis=0)
    result = attribute("saliency", tiny.tiny_cnn(), tiny.tiny_input(), target=target)
    np.testing.assert_allclose(result[0, 0].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_gradient_x_input() -> None:
    expected = (tiny.input_gradient(1, "gradient") * tiny.INPUT).sum(axis=0)
    result = attribute(
        "saliency", tiny.tiny_cnn(), tiny.tiny_input(), target=1, mode="gradient_x_input"
    )
    np.testing.assert_allclose(result[0, 0].numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("method", "rule"), [("guided_backprop", "guided"), ("deconvnet", "deconv")]
)
@pytest.mark.parametrize("target", [0, 1])
def test_relu_rules(method: str, rule: str, target: int) -> None:
    expected = tiny.input_gradient(target, rule)
    result = attribute(method, tiny.tiny_cnn(), tiny.tiny_input(), target=target)
    np.testing.assert_allclose(result[0].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_rules_differ_where_theory_says() -> None:
    """Class 0 has a negative weight on feature 1: guided and deconv drop it, gradient keeps it."""
    gradient = tiny.input_gradient(0, "gradient")
    guided = tiny.input_gradient(0, "guided")
    assert not np.allclose(gradient, guided)
    assert not np.allclose(guided, tiny.input_gradient(0, "deconv"))


@pytest.mark.parametrize("target", [0, 1])
def test_grad_cam_and_cam(target: int) -> None:
    model = tiny.tiny_cnn()
    result = run_methods(model, tiny.tiny_input(), [("grad_cam", {}), ("cam", {})], target=target)
    assert result.layer == "relu"
    np.testing.assert_allclose(
        result.outputs["grad_cam"].map[0, 0].numpy(), tiny.grad_cam(target), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        result.outputs["cam"].map[0, 0].numpy(), tiny.cam(target), rtol=1e-5, atol=1e-6
    )


def test_guided_grad_cam_is_the_product() -> None:
    expected = tiny.input_gradient(1, "guided") * tiny.grad_cam(1)[None]
    result = attribute("guided_grad_cam", tiny.tiny_cnn(), tiny.tiny_input(), target=1)
    np.testing.assert_allclose(result[0].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_relu6_and_functional_relu_follow_the_rules() -> None:
    """nn.ReLU6 and a functional relu inside forward get the same rules as nn.ReLU."""

    class FunctionalRelu(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.relu(x)

    expected = tiny.input_gradient(0, "guided")  # no activation reaches 6 here
    for activation in (nn.ReLU6(inplace=True), FunctionalRelu(), nn.ReLU(inplace=True)):
        model = tiny.tiny_cnn(activation)
        result = attribute("guided_backprop", model, tiny.tiny_input(), target=0)
        np.testing.assert_allclose(result[0].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_deconvnet_projection_of_one_activation() -> None:
    """Projecting unit (k, p) of the ReLU layer: d r_k(p)/dx under deconv = w_k at pixel p."""
    result = attribute(
        "deconvnet", tiny.tiny_cnn(), tiny.tiny_input(), target=0, layer="relu",
        channel=1, position=(1, 0),
    )  # fmt: skip
    expected = np.zeros((3, 2, 2))
    expected[:, 1, 0] = tiny.CONV[1]  # the signal 1 is rectified (positive) and passes
    np.testing.assert_allclose(result[0].numpy(), expected, atol=1e-6)


@pytest.mark.parametrize(
    "params",
    [{"position": (0, 0)}, {"channel": 5, "position": (0, 0)}, {"channel": 0, "position": (2, 0)}],
)
def test_projection_params_out_of_range_are_clear_errors(params: dict[str, object]) -> None:
    with pytest.raises(InvalidParamsError):
        attribute(
            "guided_backprop", tiny.tiny_cnn(), tiny.tiny_input(), target=0, layer="relu", **params
        )


def test_batched_targets_equal_single_runs() -> None:
    x = tiny.tiny_input().repeat(2, 1, 1, 1)
    batched = attribute("guided_backprop", tiny.tiny_cnn(), x, target=[0, 1])
    for row, target in enumerate((0, 1)):
        single = attribute("guided_backprop", tiny.tiny_cnn(), tiny.tiny_input(), target=target)
        torch.testing.assert_close(batched[row], single[0])
