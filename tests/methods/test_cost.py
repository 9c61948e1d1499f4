"""The cost model: declared passes against counted ones, budgets and the value that fits."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest
import torch
from torch import nn

from cnnlens.errors import OverBudgetError
from cnnlens.methods import get_method, method_names, run_methods
from cnnlens.methods.base import parse_params
from cnnlens.methods.cost import (
    Budget,
    Calibration,
    calibrate,
    check_budget,
    check_methods_budget,
    cost_params,
    estimate,
    estimate_request,
    layer_channels,
    request_cost,
)
from cnnlens.methods.run import inventory_of
from cnnlens.methods.workload import Workload
from cnnlens.models import LoadedModel, count_hooks
from tests.methods.counting import counting

SIDE = 24
CHANNELS = 8
LAYER = "relu2"


def small_cnn() -> nn.Module:
    """conv 3->8, ReLU, conv 8->8 stride 2, ReLU, GAP, linear 8->5: seeded weights."""
    torch.manual_seed(7)
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, CHANNELS, 3, padding=1),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(CHANNELS, CHANNELS, 3, stride=2, padding=1),
            relu2=nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(CHANNELS, 5),
        )
    ).eval()


def counted_model() -> nn.Module:
    """small_cnn() with its layer inventory already taken (a model's one-off set-up)."""
    model = small_cnn()
    inventory_of(model, (SIDE, SIDE))
    return model


def two_rows() -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    return torch.randn(2, 3, SIDE, SIDE, generator=generator)


# Small params, each method's passes counted exactly: (method, params).
CASES: list[tuple[str, dict[str, Any]]] = [
    ("saliency", {}),
    ("guided_backprop", {}),
    ("deconvnet", {}),
    ("grad_cam", {}),
    ("grad_cam_pp", {}),
    ("guided_grad_cam", {}),
    ("cam", {}),
    ("smoothgrad", {"samples": 5, "batch_size": 3}),
    ("integrated_gradients", {"steps": 4, "batch_size": 3}),
    ("score_cam", {"channels": 5, "batch_size": 2}),
    ("score_cam", {"channels": "all", "batch_size": 3}),
    ("occlusion", {"window": 8, "stride": 4, "batch_size": 7, "engine": "dense"}),
    ("activation_max", {"steps": 3, "batch_size": 1, "jitter": 2}),
    ("adversarial", {"attack": "pgd", "steps": 3}),
    ("adversarial", {"attack": "fgsm"}),
    ("feature_maps", {}),
    ("filters", {}),
    ("smoothgrad", {"samples": 5, "batch_size": 3, "variant": "vargrad"}),
    ("deeplift", {}),
    ("deeplift_shap", {"baselines": ["black", "white", "zero"]}),
    ("gradient_shap", {"n_samples": 3}),
    ("input_x_gradient", {}),
    ("lime", {"n_samples": 10, "batch_size": 4, "superpixels": "grid", "segments": 4}),
    ("kernel_shap", {"n_samples": 10, "batch_size": 4, "superpixels": "grid", "segments": 4}),
    ("feature_ablation", {"batch_size": 3, "superpixels": "grid", "segments": 4}),
    ("lrp", {}),
    ("hirescam", {}),
    ("xgrad_cam", {}),
    ("layer_cam", {}),
    ("eigen_cam", {}),
    ("ablation_cam", {"channels": 5, "batch_size": 2}),
]
# Declared as upper bounds of the work, which the passes through the model's root undercount:
# LRP's rules re-run each layer's forward inside its backward; Ablation-CAM runs the part
# before its layer for one row per batch of ablations, the rest for the whole batch.
UPPER_BOUNDS = {"lrp", "ablation_cam"}


def test_every_method_is_covered() -> None:
    assert {name for name, _ in CASES} == set(method_names())


@pytest.mark.parametrize(("name", "params"), CASES, ids=[f"{n}{p}" for n, p in CASES])
def test_declared_passes_match_counted_ones(name: str, params: dict[str, Any]) -> None:
    """Forward and backward rows counted on the model agree with the declaration exactly
    (occlusion's dense engine included); the tolerance is one row in a hundred."""
    model = counted_model()
    x = two_rows()
    with counting(model) as passes:
        run_methods(model, x, [(name, params)], target=[1, 3], layer=LAYER)
    assert count_hooks(model) == 0
    method = get_method(name)
    workload = Workload(rows=2, input_shape=(3, SIDE, SIDE), layer_channels=CHANNELS)
    cost = request_cost([(method, parse_params(method, params))], workload)
    declared_peak = max(peak.rows for peak in cost.peaks)
    if name in UPPER_BOUNDS:
        assert passes.forwards <= cost.forwards and passes.backwards <= cost.backwards
        assert passes.largest_batch <= declared_peak
        return
    assert cost.forwards == pytest.approx(passes.forwards, rel=0.01)
    assert cost.backwards == pytest.approx(passes.backwards, rel=0.01)
    assert passes.largest_batch == declared_peak


def test_incremental_occlusion_stays_below_its_dense_bound() -> None:
    model = counted_model()
    params = {"window": 8, "stride": 4, "engine": "auto"}
    with counting(model) as passes:
        run_methods(model, two_rows(), [("occlusion", params)], target=[1, 3])
    method = get_method("occlusion")
    workload = Workload(rows=2, input_shape=(3, SIDE, SIDE))
    assert (
        passes.forwards <= request_cost([(method, parse_params(method, params))], workload).forwards
    )


def test_gradient_methods_of_one_run_share_its_forward() -> None:
    model = counted_model()
    methods = [("saliency", {}), ("grad_cam", {}), ("smoothgrad", {"samples": 3})]
    with counting(model) as passes:
        run_methods(model, two_rows(), methods, target=[1, 3], layer=LAYER)
    chosen = [(get_method(n), parse_params(get_method(n), p)) for n, p in methods]
    cost = request_cost(chosen, Workload(2, (3, SIDE, SIDE), CHANNELS))
    assert cost.forwards == passes.forwards == 2 + 3 * 2
    # saliency and Grad-CAM share one backward (one ReLU rule): counted once each, an upper
    # bound by one pass.
    assert passes.backwards == 2 + 3 * 2
    assert cost.backwards == passes.backwards + 2


# A fixed calibration: 10 ms a forward and 20 ms a backward per 224 x 224 row, 80 MB kept for
# a backward, 10 MB live in a plain forward.
CALIBRATION = Calibration(
    input_shape=(3, 224, 224),
    forward_s=0.010,
    backward_s=0.020,
    saved_bytes_per_row=80_000_000,
    inference_bytes_per_row=10_000_000,
)
BUDGET = Budget.derive(CALIBRATION, deadline_s=20.0, memory_bytes=1_000_000_000)
SHAPE = (3, 224, 224)


def test_the_budget_follows_the_deadline_and_the_measured_forward() -> None:
    assert BUDGET.forward_equivalents == pytest.approx(0.5 * 20.0 / 0.010)  # 1000
    configured = Budget.derive(CALIBRATION, 20.0, forward_equivalents=42, memory_bytes=7)
    assert (configured.forward_equivalents, configured.memory_bytes) == (42, 7)


def test_estimates_in_forward_equivalents_and_bytes() -> None:
    """SmoothGrad, 25 samples, 2 targets: 50 forwards + 50 backwards (2 each) + the driver's
    2 = 152; its chunk of 8 rows keeps 8 x 80 MB plus two inputs of floats."""
    found = estimate_request([("smoothgrad", {})], 2, SHAPE, CALIBRATION)
    assert found.forward_equivalents == pytest.approx(2 + 50 + 50 * 2)
    assert found.peak_bytes == 8 * 80_000_000 + 2 * 2 * 3 * 224 * 224 * 4
    assert found.seconds == pytest.approx(152 * 0.010)
    half = estimate_request([("smoothgrad", {})], 2, (3, 112, 112), CALIBRATION)
    assert half.forward_equivalents == pytest.approx(found.forward_equivalents / 4)


def _refusal(method: str, params: dict[str, Any], targets: int, **kwargs: Any) -> OverBudgetError:
    with pytest.raises(OverBudgetError) as caught:
        check_budget(method, params, targets, SHAPE, BUDGET, **kwargs)
    error = caught.value
    assert (error.status, error.code) == (422, "over_budget")
    assert error.param is not None and error.limit is not None
    assert error.param in error.message and str(error.limit) in error.message
    return error


def _fits(method: str, params: dict[str, Any], targets: int, **kwargs: Any) -> bool:
    try:
        check_budget(method, params, targets, SHAPE, BUDGET, **kwargs)
    except OverBudgetError:
        return False
    return True


@pytest.mark.parametrize(
    ("method", "params", "targets", "param", "kwargs"),
    [
        ("smoothgrad", {"samples": 1024, "batch_size": 8}, 16, "samples", {}),
        ("integrated_gradients", {"steps": 1024, "batch_size": 8}, 16, "steps", {}),
        ("score_cam", {"channels": "all"}, 1, "channels", {"layer_channels": 1280}),
        ("activation_max", {"steps": 2000, "batch_size": 4}, 2, "steps", {}),
        ("adversarial", {"steps": 1000}, 4, "steps", {}),
        ("smoothgrad", {"samples": 64, "batch_size": 1024}, 1, "batch_size", {}),
        ("saliency", {}, 16, "targets", {}),
    ],
)
def test_the_largest_value_that_fits_fits_and_one_more_does_not(
    method: str, params: dict[str, Any], targets: int, param: str, kwargs: dict[str, Any]
) -> None:
    error = _refusal(method, params, targets, **kwargs)
    assert error.param == param
    if param == "targets":
        assert _fits(method, params, error.limit, **kwargs)
        assert not _fits(method, params, error.limit + 1, **kwargs)
        return
    assert _fits(method, {**params, param: error.limit}, targets, **kwargs)
    assert not _fits(method, {**params, param: error.limit + 1}, targets, **kwargs)


def test_occlusion_names_the_smallest_stride_that_fits() -> None:
    """window=1, stride=1 on 224 x 224: 50176 dense forwards; raise the stride."""
    params = {"window": 1, "stride": 1}
    error = _refusal("occlusion", params, 1)
    assert error.param == "stride" and "raise stride to at least" in error.message
    assert _fits("occlusion", {**params, "stride": error.limit}, 1)
    assert not _fits("occlusion", {**params, "stride": error.limit - 1}, 1)


def test_a_request_that_fits_passes_and_defaults_fit_one_target() -> None:
    for name in method_names():
        check_budget(name, {}, 1, SHAPE, BUDGET, layer_channels=1280)


def test_several_methods_are_checked_together() -> None:
    light = [("saliency", {}), ("grad_cam", {})]
    check_methods_budget(light, 4, SHAPE, BUDGET)
    with pytest.raises(OverBudgetError, match="samples"):
        check_methods_budget([*light, ("smoothgrad", {"samples": 400})], 4, SHAPE, BUDGET)


def test_cost_params_are_marked_in_the_schema() -> None:
    schema = get_method("score_cam").Params.model_json_schema()
    assert schema["properties"]["channels"]["drives_cost"] == "time"
    assert schema["properties"]["batch_size"]["drives_cost"] == "memory"
    assert cost_params(get_method("smoothgrad"), prefer="memory") == ["batch_size", "samples"]
    assert cost_params(get_method("saliency")) == []


def test_lighter_requests_order_first() -> None:
    light = estimate_request([("grad_cam", {})], 1, SHAPE, CALIBRATION)
    heavy = estimate_request([("score_cam", {})], 1, SHAPE, CALIBRATION, layer_channels=1280)
    assert light.forward_equivalents < heavy.forward_equivalents


def test_calibration_of_the_default_model(default_model: LoadedModel) -> None:
    """Real measurements: positive times, a backward dearer than a forward, and a forward that
    keeps far more for its backward than it holds live without one."""
    measured = calibrate(default_model, rows=1, repeats=1)
    assert measured.input_shape == (3, 224, 224)
    assert measured.forward_s > 0 and measured.backward_s >= measured.forward_s
    assert measured.saved_bytes_per_row > 4 * measured.inference_bytes_per_row > 0
    assert count_hooks(default_model.module) == 0
    workload = Workload(1, (3, 224, 224))
    assert estimate(request_cost([], workload), workload, measured).forward_equivalents == 1
    assert layer_channels(default_model, None) == 1280
    assert layer_channels(default_model, "blocks.2") == 40


def test_saved_bytes_do_not_grow_with_the_rounds_measured(default_model: LoadedModel) -> None:
    """Each round's saved tensors are counted on their own: a storage freed and allocated
    again at another address in a later round is not counted twice."""
    once = calibrate(default_model, rows=1, repeats=1)
    thrice = calibrate(default_model, rows=1, repeats=3)
    assert thrice.saved_bytes_per_row == once.saved_bytes_per_row
