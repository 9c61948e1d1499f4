"""Every method that explains detectors, after success and after an exception, leaves no hook
and the detector as it was: weights, .grad, requires_grad, training flags, the input."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import cnnlens
from cnnlens.errors import IncompatibleModelError
from cnnlens.methods import get_method, method_names, run_methods
from cnnlens.methods.base import explains_head
from cnnlens.methods.run import plan_run
from cnnlens.targets import BoxTarget
from tests.detection.conftest import BLUE_BOX, RED_AND_BLUE, RED_BOX
from tests.detection.detectors import PREPROCESSING, SquareDetector, square_image
from tests.methods.test_contract import assert_same, fingerprint

FAST: dict[str, dict[str, Any]] = {
    "occlusion": {"window": 32, "stride": 32},
    "integrated_gradients": {"steps": 2},
    "smoothgrad": {"samples": 2},
    "d_rise": {"n_masks": 4},
}


def _explains_the_square_detector(name: str) -> bool:
    """Whether `name` can explain the square detector (CAM cannot: no GAP + linear head)."""
    model = cnnlens.wrap(SquareDetector().eval(), preprocessing=PREPROCESSING)
    try:
        plan_run(model, [(name, None)])
    except IncompatibleModelError:
        return False
    return True


METHODS = [
    m
    for m in method_names()
    if explains_head(get_method(m), "detection") and _explains_the_square_detector(m)
]


class ArmedSquareDetector(SquareDetector):
    """The square detector with a tripwire in its head: an exception inside any forward."""

    armed = False

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        if self.armed:
            raise RuntimeError("tripwire")
        return super().forward(x)


def detector_as_handed_over() -> nn.Module:
    """As a user might hand it over: training mode, trainable, with a stale .grad."""
    detector = ArmedSquareDetector().train()
    detector.head.weight.grad = torch.full_like(detector.head.weight, 7.0)
    return detector


def _input() -> torch.Tensor:
    from cnnlens.models.preprocess import Preprocessing

    picture = square_image(RED_AND_BLUE)
    return Preprocessing.from_mapping(PREPROCESSING)(picture).expand(2, -1, -1, -1).clone()


@pytest.mark.parametrize("method", METHODS)
def test_success_leaves_the_detector_as_it_was(method: str) -> None:
    detector = detector_as_handed_over()
    x = _input()
    x_before, before = x.clone(), fingerprint(detector)
    target = BoxTarget([1, 3], [list(RED_BOX), list(BLUE_BOX)])
    result = run_methods(detector, x, [(method, FAST.get(method, {}))], target=target)
    assert_same(before, fingerprint(detector))
    assert torch.equal(x, x_before)
    output = result.outputs[method].map
    assert torch.isfinite(output).all()
    if get_method(method).produces != "weights":
        assert output.shape[0] == 2 and tuple(output.shape[-2:]) == tuple(x.shape[-2:])


@pytest.mark.parametrize("method", METHODS)
def test_an_exception_leaves_the_detector_as_it_was(method: str) -> None:
    if get_method(method).produces == "weights":
        pytest.skip("reads weights only: no forward to interrupt")
    detector = detector_as_handed_over()
    before = fingerprint(detector)
    detector.armed = True
    target = BoxTarget([1, 3], [list(RED_BOX), list(BLUE_BOX)])
    with pytest.raises(RuntimeError, match="tripwire"):
        run_methods(detector, _input(), [(method, FAST.get(method, {}))], target=target)
    assert_same(before, fingerprint(detector))
