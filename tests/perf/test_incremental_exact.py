"""Incremental occlusion is exact: the same maps as dense forwards, on real architectures and
on a small net that exercises every kind of op the planner handles, with dense fallbacks."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlens.errors import IncompatibleModelError
from cnnlens.incremental.engine import IncrementalOcclusion
from cnnlens.incremental.windows import WindowGrid
from cnnlens.methods import run_methods
from cnnlens.models import LoadedModel, load_model

TOLERANCE = 1e-4


def both_engines(
    model: LoadedModel | nn.Module, x: torch.Tensor, target: Any = None, **params: Any
) -> tuple[Any, Any]:
    outputs = [
        run_methods(model, x, [("occlusion", {**params, "engine": engine})], target=target)
        .outputs["occlusion"]
        for engine in ("incremental", "dense")
    ]  # fmt: skip
    return outputs[0], outputs[1]


def assert_exact(incremental: Any, dense: Any) -> None:
    assert incremental.extras["engine"] == "incremental"
    assert incremental.extras["planned_work"] < 0.9  # regions really were recomputed alone
    assert dense.extras["engine"] == "dense"
    difference = (incremental.map - dense.map).abs().max()
    assert float(difference) <= TOLERANCE
    window_difference = (
        incremental.extras["window_loss_changes"] - dense.extras["window_loss_changes"]
    )
    assert float(window_difference.abs().max()) <= TOLERANCE
    assert float(dense.map.abs().max()) > 10 * TOLERANCE  # a map that can show a difference


def test_default_model_on_chelsea(default_model: LoadedModel, chelsea_batch: torch.Tensor) -> None:
    x = F.interpolate(chelsea_batch, size=(96, 96), mode="bilinear", antialias=True)
    assert_exact(*both_engines(default_model, x, window=16, stride=16, batch_size=12))


@pytest.mark.parametrize("name", ["torchvision:resnet50", "torchvision:vgg16"])
def test_random_torchvision_models(name: str) -> None:
    torch.manual_seed(0)
    model = load_model(name, weights="none")
    x = torch.randn(1, 3, 64, 64)
    incremental, dense = both_engines(model, x, target=3, window=16, stride=12, batch_size=8)
    assert_exact(incremental, dense)


class Zoo(nn.Module):
    """Every op kind the planner knows: asymmetric F.pad, strided / dilated / grouped convs,
    ceil-mode max pool, avg pool, eval BatchNorm, in-place ReLU, residual add, channel cat;
    optionally a squeeze-excitation gate (global mean mid-network) that forces a dense
    fallback from there on."""

    def __init__(self, gate: bool) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2)
        self.norm = nn.BatchNorm2d(8)
        self.dilated = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2)
        self.branch = nn.Conv2d(8, 4, 1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.avg = nn.AvgPool2d(2)
        self.head = nn.Conv2d(12, 16, 3, padding=1)
        self.gate = gate
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm(self.stem(F.pad(x, (1, 0, 2, 1)))), inplace=True)
        x = x + self.dilated(x)
        x = torch.cat([x, self.branch(x)], dim=1)
        if self.gate:
            x = x * torch.sigmoid(x.mean(dim=(2, 3), keepdim=True))
        x = self.head(self.avg(self.pool(x)))
        return self.fc(x.amax(dim=(2, 3)))


def zoo(gate: bool) -> nn.Module:
    torch.manual_seed(0)
    model = Zoo(gate)
    with torch.no_grad():  # non-trivial running statistics, so BatchNorm is not an identity
        model.norm.running_mean.uniform_(-0.5, 0.5)
        model.norm.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("gate", [False, True])
def test_every_op_kind_on_a_rectangular_image(gate: bool) -> None:
    x = torch.randn(2, 3, 45, 61)
    incremental, dense = both_engines(zoo(gate), x, target=[2, 7], window=9, stride=7)
    assert_exact(incremental, dense)


def test_plan_recomputes_regions_then_falls_back_to_dense() -> None:
    x = torch.randn(1, 3, 45, 61)
    grid = WindowGrid.of(45, 61, 9, 7)
    rows, cols = grid.corners()
    cases = [
        (False, 1.0, "amax", "no (C, h, w) map", 0.4),  # the global max before the classifier
        (False, 0.5, "conv2d", "of the map", 0.4),  # the head's box covers over half its map
        (True, 1.0, "mean", "not pointwise", 0.9),  # the gate's global mean, mid-network
    ]
    for gate, fraction, first_dense, reason, most in cases:
        plan = IncrementalOcclusion.prepare(zoo(gate), x, rows, cols, (9, 9), fraction).plan
        kinds = [node.kind for node in plan.nodes]
        assert {"window", "pointwise", "pad"} <= set(kinds)
        assert plan.first_dense is not None and plan.first_dense.startswith(first_dense)
        assert reason in str(plan.first_dense_reason)
        assert 0.0 < plan.cost_fraction < most


class Moody(nn.Module):
    """Data-dependent control flow: a recorded graph cannot replay it faithfully."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if float(x.mean()) > 0:
            x = x * 2
        return x.mean(dim=(2, 3))


def test_unreplayable_model_falls_back_or_refuses() -> None:
    torch.manual_seed(0)
    model, x = Moody().eval(), torch.randn(1, 3, 16, 16)
    params = {"window": 4, "stride": 4}
    auto = run_methods(model, x, [("occlusion", params)], target=1).outputs["occlusion"]
    dense = run_methods(model, x, [("occlusion", {**params, "engine": "dense"})], target=1)
    assert auto.extras["engine"] == "dense" and "replaying" in auto.extras["engine_note"]
    torch.testing.assert_close(auto.map, dense.outputs["occlusion"].map)
    with pytest.raises(IncompatibleModelError, match="cannot run incrementally"):
        run_methods(model, x, [("occlusion", {**params, "engine": "incremental"})], target=1)


class ViewFlatten(nn.Module):
    """Flattens with `x.view(-1, n)`, which needs a contiguous map (as a dense forward gives)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.down = nn.Conv2d(6, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.down(torch.relu(self.conv(x))))
        return self.fc(x.view(-1, 4 * 8 * 8))


def test_view_flattening_model_under_auto_equals_dense() -> None:
    torch.manual_seed(0)
    model, x = ViewFlatten().eval(), torch.randn(2, 3, 16, 16)
    params = {"window": 4, "stride": 4}
    auto = run_methods(model, x, [("occlusion", params)], target=[1, 3]).outputs["occlusion"]
    dense = run_methods(model, x, [("occlusion", {**params, "engine": "dense"})], target=[1, 3])
    assert auto.extras["engine"] == "incremental"
    assert auto.extras["planned_work"] < 0.9
    torch.testing.assert_close(auto.map, dense.outputs["occlusion"].map, rtol=0, atol=TOLERANCE)
    assert float(auto.map.abs().max()) > 10 * TOLERANCE


def test_failing_incremental_batch_falls_back_to_dense(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check at preparation runs one real incremental batch; an error there means dense."""

    def broken(self: IncrementalOcclusion, start: int, stop: int, patch: torch.Tensor) -> Any:
        raise RuntimeError("view size is not compatible")

    torch.manual_seed(0)
    model, x = ViewFlatten().eval(), torch.randn(1, 3, 16, 16)
    params = {"window": 4, "stride": 4}
    dense = run_methods(model, x, [("occlusion", {**params, "engine": "dense"})], target=1)
    monkeypatch.setattr(IncrementalOcclusion, "logits", broken)
    auto = run_methods(model, x, [("occlusion", params)], target=1).outputs["occlusion"]
    assert auto.extras["engine"] == "dense"
    assert "incremental batch failed" in auto.extras["engine_note"]
    torch.testing.assert_close(auto.map, dense.outputs["occlusion"].map)
    with pytest.raises(IncompatibleModelError, match="view size"):
        run_methods(model, x, [("occlusion", {**params, "engine": "incremental"})], target=1)
