"""The new scores equal their definitions, computed here by hand on small maps and models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cnnlens.compare.metrics import complexity, sparseness
from cnnlens.compare.robustness import infidelity_score, sensitivity_score
from cnnlens.models import wrap
from tests.tiny import CONV, FC, summing_model, tiny_cnn, tiny_input


def test_sparseness_is_the_gini_index_of_the_absolute_map() -> None:
    # sorted |values| 0, 1, 2, 3: sum_i (2i - n - 1) a_i = -3*0 - 1*1 + 1*2 + 3*3 = 10
    assert sparseness(np.array([[0.0, -3.0], [2.0, 1.0]])) == pytest.approx(10 / (4 * 6))
    assert sparseness(np.full((5, 5), 0.7)) == pytest.approx(0.0, abs=1e-12)  # flat
    one_pixel = np.zeros((4, 4))
    one_pixel[1, 2] = 5.0
    assert sparseness(one_pixel) == pytest.approx(15 / 16)  # (N - 1) / N
    assert math.isnan(sparseness(np.zeros((3, 3))))
    # a colour map counts each pixel once, by its largest |value| over the channels
    colour = np.stack([np.array([[0.0, -3.0], [2.0, 0.0]]), np.array([[0.0, 1.0], [0.5, 1.0]])])
    assert sparseness(colour) == pytest.approx(sparseness(np.array([[0.0, 3.0], [2.0, 1.0]])))


def test_complexity_is_the_entropy_of_the_fractional_contribution() -> None:
    p = np.array([1, 2, 3]) / 6  # |0|, |-1|, |2|, |3| over their sum 6; 0 ln 0 = 0
    assert complexity(np.array([[0.0, -1.0], [2.0, 3.0]])) == pytest.approx(-(p * np.log(p)).sum())
    assert complexity(np.full((4, 4), 2.0)) == pytest.approx(math.log(16))  # flat: ln N
    one_pixel = np.zeros((4, 4))
    one_pixel[0, 0] = -1.0
    assert complexity(one_pixel) == pytest.approx(0.0)
    assert math.isnan(complexity(np.zeros((2, 2))))


def test_infidelity_by_hand() -> None:
    x = torch.tensor([[1.0, -0.5], [0.25, 2.0]]).expand(1, 3, 2, 2).clone()
    saliency = torch.tensor([[[[2.0, -1.0], [0.5, 4.0]]]])  # (1, 1, 2, 2)
    n, noise, seed = 7, 0.3, 5
    value = infidelity_score(summing_model(), x, saliency, 0, n, noise, seed, batch_size=3)
    # I_i = noise * row i of randn((n, 3, 2, 2)) from a generator seeded `seed`
    draws = torch.randn((n, 3, 2, 2), generator=torch.Generator().manual_seed(seed)).double()
    perturbations = draws.numpy() * noise
    phi = saliency[0, 0].double().numpy() / 4.0  # divided by max |value|, every channel alike
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    total = float(x.double().sum())
    expected = np.mean(
        [
            ((p * phi).sum() - (sigmoid(total) - sigmoid(total - p.sum()))) ** 2
            for p in perturbations
        ]
    )
    assert value == pytest.approx(expected, rel=1e-4)


def _saliency_by_hand(x: np.ndarray, target: int) -> np.ndarray:
    """max_c |dS_t / dx_c| of tests.tiny's CNN: sum_k FC[t,k] / P [a_k > 0] CONV[k,c]."""
    a = np.einsum("kc,chw->khw", CONV, x)
    upstream = (FC[target] / a[0].size)[:, None, None] * (a > 0)  # (K, H, W)
    gradient = np.einsum("khw,kc->chw", upstream, CONV)
    return np.abs(gradient).max(axis=0)  # (H, W)


def test_sensitivity_max_by_hand() -> None:
    model = wrap(tiny_cnn())
    x = tiny_input()
    n, radius, seed = 6, 0.6, 2  # a radius that flips some ReLUs
    clean = _saliency_by_hand(x[0].double().numpy(), 0)
    value = sensitivity_score(
        model, x, "saliency", {}, torch.from_numpy(clean).float()[None, None], 0,
        n_perturb_samples=n, radius=radius, seed=seed,
    )  # fmt: skip
    # delta_i = radius * (2 u_i - 1), u = rand((n, 3, 2, 2)) from a generator seeded `seed`
    uniform = torch.rand((n, 3, 2, 2), generator=torch.Generator().manual_seed(seed))
    deltas = (2 * uniform.double().numpy() - 1) * radius
    unit = clean / np.abs(clean).max()
    ratios = []
    for delta in deltas:
        moved = _saliency_by_hand(x[0].double().numpy() + delta, 0)
        ratios.append(np.linalg.norm(moved / np.abs(moved).max() - unit) / np.linalg.norm(unit))
    assert max(ratios) > 0.05  # the radius does change the map
    assert value == pytest.approx(max(ratios), rel=1e-4)
