"""Occlusion under sigmoid and binary heads measures the change of -log sigmoid(z_c); a
grayscale model's patch has one channel. Checked against a plain dense loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlens
from cnnlens.incremental.windows import WindowGrid

SIZE, WINDOW, STRIDE = 20, 6, 4


def _model(in_chans: int, outputs: int) -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(
        nn.Conv2d(in_chans, 6, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, outputs),
    ).eval()


def _by_hand(model: nn.Module, x: torch.Tensor, column: int, sign: float) -> torch.Tensor:
    """(rows, cols) change of -log sigmoid(sign * z[column]) when each window is zeroed."""

    def loss(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return -F.logsigmoid(sign * model(batch)[:, column])

    clean = loss(x)[0]
    grid = WindowGrid.of(SIZE, SIZE, WINDOW, STRIDE)
    changes = torch.zeros(grid.shape)
    for i, row in enumerate(grid.row_starts):
        for j, col in enumerate(grid.col_starts):
            copy = x.clone()
            copy[:, :, row : row + WINDOW, col : col + WINDOW] = 0.0
            changes[i, j] = loss(copy)[0] - clean
    return changes


def _occlusion(loaded: cnnlens.LoadedModel, x: torch.Tensor, target: int | str, engine: str):
    params = {"window": WINDOW, "stride": STRIDE, "fill": "zero", "engine": engine}
    result = cnnlens.run_methods(loaded, x, [("occlusion", params)], target=target)
    return result.outputs["occlusion"].extras


@pytest.mark.parametrize("engine", ["dense", "incremental"])
@pytest.mark.parametrize("in_chans", [3, 1])
def test_sigmoid_occlusion_equals_the_dense_loop(engine: str, in_chans: int) -> None:
    module = _model(in_chans, 4)
    loaded = cnnlens.wrap(module, head="sigmoid", preprocessing={"input_size": SIZE})
    x = torch.randn(1, in_chans, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    extras = _occlusion(loaded, x, 2, engine)
    assert extras["engine"] == engine
    expected = _by_hand(module, x, 2, 1.0)
    torch.testing.assert_close(extras["window_loss_changes"][0], expected, rtol=1e-4, atol=1e-5)
    softmax_changes = -F.log_softmax(module(x).detach(), dim=1)[0, 2]  # not what is measured
    assert float(extras["clean_loss"][0]) != pytest.approx(float(softmax_changes))


@pytest.mark.parametrize("engine", ["dense", "incremental"])
def test_binary_occlusion_uses_the_signed_logit(engine: str) -> None:
    module = _model(3, 1)
    loaded = cnnlens.wrap(module, head="binary", preprocessing={"input_size": SIZE})
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    for target, sign in (("positive", 1.0), ("negative", -1.0)):
        extras = _occlusion(loaded, x, target, engine)
        expected = _by_hand(module, x, 0, sign)
        changes = extras["window_loss_changes"][0]
        torch.testing.assert_close(changes, expected, rtol=1e-4, atol=1e-5)
