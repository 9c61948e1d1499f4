"""Acceptance on the real default model and chelsea(): deletion AUC against random maps, the
model-randomization sanity check (Adebayo et al. 2018), and what compare() reports.

Measured on efficientnet_lite0 / chelsea (8 steps, baseline "rise", seed 0):
deletion AUC Grad-CAM 0.421, random 7x7 maps (seeds 0-3) 0.497 / 0.454 / 0.485 / 0.498;
mean Spearman similarity over 3 randomized blocks (classifier, bn2, conv_head):
guided backprop 0.998, Grad-CAM 0.479 (0.699, 0.688, 0.049).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlens.compare import CompareOptions, Comparison, compare, perturbation_curves, random_map
from cnnlens.models import LoadedModel
from tests.conftest import EGYPTIAN_CAT

STEPS = 8


@pytest.fixture(scope="module")
def comparison(default_model: LoadedModel, chelsea: Image.Image) -> Comparison:
    options = CompareOptions(
        steps=STEPS, scores=["deletion", "randomization"], stages=3, seed=0, ssim=True,
        random_baseline=True,
    )  # fmt: skip
    return compare(default_model, chelsea, ["grad_cam", "guided_backprop"], options=options)


def test_grad_cam_deletes_faster_than_random_maps(
    comparison: Comparison, default_model: LoadedModel, chelsea_batch: torch.Tensor
) -> None:
    scores = comparison.images[0].scores
    grad_cam = scores["grad_cam"]["deletion"]
    random_aucs = [scores["random"]["deletion"]]  # seed 0, scored by compare()
    for seed in (1, 2, 3):
        curves = perturbation_curves(
            default_model.module, chelsea_batch, random_map((224, 224), seed), EGYPTIAN_CAT,
            steps=STEPS, kinds=("deletion",),
        )  # fmt: skip
        assert curves.deletion_auc is not None
        random_aucs.append(curves.deletion_auc)
    # measured: 0.421 vs 0.454-0.498 (mean 0.483)
    assert grad_cam < min(random_aucs) - 0.02, (grad_cam, random_aucs)
    assert grad_cam < float(np.mean(random_aucs)) - 0.04, (grad_cam, random_aucs)


def test_deletion_curve_starts_at_the_prediction_and_ends_near_zero(
    comparison: Comparison,
) -> None:
    item = comparison.images[0]
    curve = item.curves["grad_cam"].deletion
    assert curve is not None and len(curve) == STEPS + 1
    assert curve[0] == pytest.approx(item.target.probability, abs=1e-4)  # nothing deleted yet
    assert curve[-1] < 0.05  # a gray image is no Egyptian cat
    assert item.target.index == EGYPTIAN_CAT


def test_model_randomization_guided_backprop_barely_changes_grad_cam_does(
    comparison: Comparison,
) -> None:
    randomization = comparison.images[0].randomization
    assert randomization is not None
    assert randomization.stages == ["classifier", "bn2", "conv_head"]
    guided = comparison.images[0].scores["guided_backprop"]["randomization"]
    grad_cam = comparison.images[0].scores["grad_cam"]["randomization"]
    # measured: guided backprop 0.998 (every stage >= 0.99), Grad-CAM 0.479
    assert guided > 0.95
    assert min(randomization.similarity["guided_backprop"]) > 0.95
    assert grad_cam < 0.6
    assert guided - grad_cam > 0.4
    ssim = comparison.images[0].scores
    assert ssim["guided_backprop"]["randomization_ssim"] > 0.95  # measured 0.998
    assert ssim["grad_cam"]["randomization_ssim"] < 0.6  # measured 0.43


def test_randomization_never_touches_the_shared_model(
    default_model: LoadedModel, chelsea: Image.Image
) -> None:
    before = copy.deepcopy(default_model.module.state_dict())
    rng_state = torch.random.get_rng_state()
    options = CompareOptions(steps=2, scores=["randomization"], stages=2, seed=3)
    first = compare(default_model, chelsea, ["grad_cam"], options=options)
    after = default_model.module.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert torch.equal(torch.random.get_rng_state(), rng_state)
    second = compare(default_model, chelsea, ["grad_cam"], options=options)  # seeded: same
    assert first.images[0].scores == second.images[0].scores


def test_agreement_is_consistent_with_the_maps(comparison: Comparison) -> None:
    from cnnlens.compare import spearman, top_k_iou

    item = comparison.images[0]
    (pair,) = item.agreement
    assert (pair.first, pair.second) == ("grad_cam", "guided_backprop")
    maps = item.maps
    assert pair.spearman == pytest.approx(spearman(maps["grad_cam"], maps["guided_backprop"]))
    assert pair.top_k_iou == pytest.approx(
        top_k_iou(maps["grad_cam"], maps["guided_backprop"], 0.1)
    )
    assert -1 <= pair.spearman <= 1 and 0 <= pair.top_k_iou <= 1


def test_json_summary_and_grid(comparison: Comparison) -> None:
    body = comparison.to_json()
    assert body["methods"] == ["grad_cam", "guided_backprop"]
    summary = body["summary"]
    assert set(summary) == {"grad_cam", "guided_backprop", "random"}
    one = body["images"][0]["scores"]["grad_cam"]["deletion"]
    assert summary["grad_cam"]["deletion"] == {"mean": one, "std": 0.0, "n": 1}
    assert summary["random"]["randomization"]["n"] == 0  # not defined for it
    grid = comparison.grid(tile_size=64)
    item = comparison.images[0]
    assert item.width != item.height
    height = round(64 * item.height / item.width)  # the photo's aspect, not a square
    assert grid.size == (3 * 64 + 2 * 6, 18 + height)  # image + two methods, one caption row


def test_shared_scale_makes_weaker_maps_darker() -> None:
    from cnnlens.compare.grid import unit_maps

    strong, weak = np.array([[0.0, 4.0]]), np.array([[0.0, 1.0]])
    own = unit_maps([strong, weak], shared_scale=False)
    shared = unit_maps([strong, weak], shared_scale=True)
    assert own[1].max() == pytest.approx(1.0)
    assert shared[0].max() == pytest.approx(1.0)
    assert shared[1].max() == pytest.approx(1.0 / 4.0, rel=0.01)


def test_compare_refuses_what_is_not_a_map(default_model: LoadedModel) -> None:
    from cnnlens.errors import InvalidParamsError, MethodNotFoundError

    image = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(InvalidParamsError, match="attribution map"):
        compare(default_model, image, ["feature_maps"])
    with pytest.raises(MethodNotFoundError):
        compare(default_model, image, ["grad_cam"], params={"nope": {}})
    with pytest.raises(InvalidParamsError):
        compare(default_model, [], ["grad_cam"])
