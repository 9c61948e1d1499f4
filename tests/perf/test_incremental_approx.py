"""Approximate occlusion (Krypton's projective-field thresholding and adaptive drill-down):
exact at their exact settings, and quality that falls as the knob is turned."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from cnnlens.methods import run_methods
from tests.conftest import pearson

TOLERANCE = 1e-4


def deep_cnn() -> nn.Module:
    """Seven 3x3 convs (two strided): cones wide enough for thresholding to cut."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    channels = 3
    for width, stride in [(8, 1), (8, 1), (16, 2), (16, 1), (16, 1), (24, 2), (24, 1)]:
        layers += [nn.Conv2d(channels, width, 3, stride=stride, padding=1), nn.ReLU()]
        channels = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10)]
    for layer in layers:  # He init keeps activations at scale, so occluding changes the loss
        if isinstance(layer, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    return nn.Sequential(*layers).eval()


def occlusion(model: nn.Module, x: torch.Tensor, **params: Any) -> Any:
    base = {"window": 8, "stride": 4, "batch_size": 64}
    return run_methods(model, x, [("occlusion", {**base, **params})], target=3).outputs["occlusion"]


@pytest.fixture(scope="module")
def case() -> tuple[nn.Module, torch.Tensor, Any]:
    model = deep_cnn()
    x = torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    return model, x, occlusion(model, x, engine="dense")


def test_threshold_zero_equals_exact(case: tuple[nn.Module, torch.Tensor, Any]) -> None:
    model, x, dense = case
    got = occlusion(model, x, threshold=0.0, engine="incremental")
    torch.testing.assert_close(got.map, dense.map, rtol=0, atol=TOLERANCE)
    assert float(dense.map.abs().max()) > 10 * TOLERANCE


def non_increasing(values: list[float]) -> bool:
    return all(b <= a + 1e-9 for a, b in zip(values, values[1:], strict=False))


def test_quality_falls_with_the_threshold(case: tuple[nn.Module, torch.Tensor, Any]) -> None:
    """Pearson r against exact never rises, and planned work never grows, as tau grows."""
    model, x, dense = case
    quality, work = [], []
    for threshold in [0.0, 0.05, 0.2, 0.5, 0.9]:
        got = occlusion(model, x, threshold=threshold, engine="incremental")
        quality.append(pearson(got.map, dense.map))
        work.append(got.extras["planned_work"])
    assert quality[0] > 1 - 1e-6
    assert non_increasing(quality)
    assert non_increasing(work)
    assert quality[-1] < quality[0] - 0.01  # the knob really approximates
    assert work[-1] < work[0]


def test_drill_down_refining_everything_equals_the_fine_map(
    case: tuple[nn.Module, torch.Tensor, Any],
) -> None:
    model, x, dense = case
    got = occlusion(model, x, coarse_stride=8, refine=1.0)
    assert got.extras["engine"] == "incremental"
    torch.testing.assert_close(got.map, dense.map, rtol=0, atol=TOLERANCE)
    windows = dense.extras["window_loss_changes"]
    torch.testing.assert_close(got.extras["window_loss_changes"], windows, rtol=0, atol=TOLERANCE)


def test_drill_down_recomputes_the_highest_windows(
    case: tuple[nn.Module, torch.Tensor, Any],
) -> None:
    """Half refined: the coarse windows and the refined ones hold exact values, fewer
    copies are scored, and quality falls as `refine` does."""
    model, x, dense = case
    exact = dense.extras["window_loss_changes"][0]  # (11, 11) at stride 4
    half = occlusion(model, x, coarse_stride=8, refine=0.5, engine="dense")
    values = half.extras["window_loss_changes"][0]
    coarse = exact[::2, ::2]  # stride-8 corners are every other stride-4 corner here
    torch.testing.assert_close(values[::2, ::2], coarse, rtol=0, atol=TOLERANCE)
    matching = int(((values - exact).abs() <= TOLERANCE).sum())
    assert matching >= coarse.numel() + 60  # 36 coarse + ceil(0.5 * 121) = 61 refined
    assert half.extras["evaluated_windows"] == 36 + 61
    quality = [
        pearson(occlusion(model, x, coarse_stride=8, refine=r).map, dense.map)
        for r in (1.0, 0.5, 0.2, 0.05)
    ]
    assert non_increasing(quality)
    assert quality[-1] < 1 - 1e-4
