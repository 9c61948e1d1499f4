"""D-RISE declares the forwards it runs: n_masks per image, masked copies in chunks."""

from __future__ import annotations

import torch

from cnnlens.methods import get_method, run_methods
from cnnlens.methods.base import parse_params
from cnnlens.methods.workload import Workload
from cnnlens.models import LoadedModel
from cnnlens.targets import BoxTarget
from tests.detection.conftest import BLUE_BOX, RED_BOX
from tests.detection.detectors import square_image


def test_d_rise_runs_the_forwards_it_declares(squares: LoadedModel) -> None:
    pictures = [square_image([("red", 16, 24), ("blue", 72, 80)], seed=s) for s in (0, 1)]
    x = torch.cat([squares.preprocessing(p) for p in pictures])  # two different images
    squares.layers  # noqa: B018  (the layer inventory's trace, a one-off, before counting)
    rows: list[int] = []
    handle = squares.module.register_forward_pre_hook(lambda _, args: rows.append(len(args[0])))
    try:
        params = {"n_masks": 10, "batch_size": 4}
        target = BoxTarget(["red", "blue"], [list(RED_BOX), list(BLUE_BOX)])
        run_methods(squares, x, [("d_rise", params)], target=target)
    finally:
        handle.remove()
    method = get_method("d_rise")
    declared = method.cost(parse_params(method, params), Workload(2, (3, 128, 128)))
    driver, masked = rows[0], rows[1:]  # the driver's one forward resolves the targets
    assert driver == 2
    assert sum(masked) == declared.forwards == 20
    assert max(masked) == declared.peaks[0].rows == 4
