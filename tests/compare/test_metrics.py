"""Agreement metrics and curve areas, checked against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cnnlens.compare.faithfulness import importance_ranks
from cnnlens.compare.metrics import curve_auc, rankdata, spearman, ssim, top_k_iou


def test_rankdata_averages_ties() -> None:
    assert rankdata(np.array([10.0, 20.0, 20.0, 5.0])).tolist() == [2.0, 3.5, 3.5, 1.0]


def test_spearman_by_hand() -> None:
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    b = np.array([[1.0, 3.0], [2.0, 4.0]])
    # ranks (1,2,3,4) vs (1,3,2,4): d = (0,1,1,0), rho = 1 - 6*2 / (4*(16-1)) = 0.8
    assert spearman(a, b) == pytest.approx(0.8)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, a**3) == pytest.approx(1.0)  # monotone: same ranking


def test_spearman_with_ties_by_hand() -> None:
    a = np.array([1.0, 2.0, 2.0, 3.0]).reshape(2, 2)
    b = np.array([1.0, 2.0, 3.0, 4.0]).reshape(2, 2)
    # ranks (1, 2.5, 2.5, 4) vs (1, 2, 3, 4); centred: (-1.5, 0, 0, 1.5), (-1.5, -.5, .5, 1.5)
    # rho = 4.5 / sqrt(4.5 * 5) = 0.9487
    assert spearman(a, b) == pytest.approx(4.5 / math.sqrt(4.5 * 5.0))


def test_spearman_of_a_constant_map_is_undefined() -> None:
    assert math.isnan(spearman(np.ones((2, 2)), np.arange(4.0).reshape(2, 2)))


def test_spearman_reduces_colour_maps_by_max_abs() -> None:
    colour = np.zeros((3, 2, 2))
    colour[1] = [[-4.0, 1.0], [2.0, -3.0]]  # max |.| per pixel: 4, 1, 2, 3
    assert spearman(colour, np.array([[4.0, 1.0], [2.0, 3.0]])) == pytest.approx(1.0)


def test_top_k_iou_by_hand() -> None:
    a = np.array([[9.0, 8.0, 1.0, 0.0]])
    b = np.array([[9.0, 0.0, 8.0, 1.0]])
    # top 50%: {0, 1} and {0, 2} -> |∩| = 1, |∪| = 3
    assert top_k_iou(a, b, 0.5) == pytest.approx(1 / 3)
    assert top_k_iou(a, a, 0.5) == 1.0
    # top 25% (1 pixel): both pick pixel 0
    assert top_k_iou(a, b, 0.25) == 1.0
    # ceil(0.3 * 4) = 2 pixels
    assert top_k_iou(a, b, 0.3) == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        top_k_iou(a, b, 0.0)


def test_curve_auc_trapezoid_by_hand() -> None:
    # x = 0, .5, 1; y = 1, .5, 0 -> area of a triangle: 0.5
    assert curve_auc([1.0, 0.5, 0.0]) == pytest.approx(0.5)
    # y = 1, 0, 0, 0 at x = 0, 1/3, 2/3, 1 -> 1/6
    assert curve_auc([1.0, 0.0, 0.0, 0.0]) == pytest.approx(1 / 6)
    with pytest.raises(ValueError):
        curve_auc([1.0])


def test_ssim_identity_scale_and_difference() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((16, 16))
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, 5 * a) == pytest.approx(1.0)  # maps are scaled to [0, 1] first
    assert ssim(a, rng.random((16, 16))) < 0.2
    assert ssim(a, -a) == pytest.approx(1.0)  # absolute values, as in Adebayo et al.


def test_importance_ranks_order_and_seeded_ties() -> None:
    saliency = torch.tensor([[0.0, 5.0, 0.0], [7.0, 0.0, 0.0]])
    ranks = importance_ranks(saliency, seed=0)
    assert ranks[1, 0] == 0 and ranks[0, 1] == 1  # 7 first, then 5
    zeros = sorted(ranks[saliency == 0].tolist())
    assert zeros == [2, 3, 4, 5]
    assert torch.equal(importance_ranks(saliency, seed=0), ranks)  # reproducible
    positional = importance_ranks(saliency, seed=None)
    assert positional[saliency == 0].tolist() == [2, 3, 4, 5]  # row-major order
    shuffled = [importance_ranks(torch.zeros(8, 8), seed=s).view(-1).tolist() for s in (1, 2)]
    assert shuffled[0] != shuffled[1] and shuffled[0] != list(range(64))
