"""Deletion / insertion curves and the randomization copy on a tiny linear model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cnnlens.compare.faithfulness import gaussian_blur, perturbation_curves
from cnnlens.compare.metrics import curve_auc
from cnnlens.compare.sanity import parameter_blocks, randomize_block
from tests.tiny import summing_model


def _sigmoid(values: list[float]) -> list[float]:
    return [float(1 / (1 + np.exp(-v))) for v in values]


def test_deletion_and_insertion_by_hand() -> None:
    pixels = torch.tensor([[1.0, -0.5], [0.25, 2.0]])
    x = pixels.expand(1, 3, 2, 2).clone()  # every channel the same: the sum is 3 x pixels
    saliency = torch.tensor([[3.0, 1.0], [2.0, 4.0]])  # order: 2.0, 1.0, 0.25, -0.5
    curves = perturbation_curves(summing_model(), x, saliency, 0, steps=4, baseline="mean")
    # deletion to 0: sums 3*(2.75), 3*(0.75), 3*(-0.25), 3*(-0.5), 0
    expected_deletion = _sigmoid([8.25, 2.25, -0.75, -1.5, 0.0])
    # insertion from 0, same order: 0, 3*2, 3*3, 3*3.25, 3*2.75
    expected_insertion = _sigmoid([0.0, 6.0, 9.0, 9.75, 8.25])
    assert curves.fractions == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
    assert curves.deletion == pytest.approx(expected_deletion, abs=1e-6)
    assert curves.insertion == pytest.approx(expected_insertion, abs=1e-6)
    assert curves.deletion_auc == pytest.approx(curve_auc(expected_deletion), abs=1e-6)
    # the opposite order deletes the negative pixel first: p rises, a worse (higher) AUC
    worse = perturbation_curves(summing_model(), x, -saliency, 0, steps=4, baseline="mean")
    assert worse.deletion_auc is not None and curves.deletion_auc is not None
    assert worse.deletion_auc > curves.deletion_auc + 0.2


def test_batches_give_the_same_curve() -> None:
    x = torch.randn(1, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    saliency = torch.rand(2, 2, generator=torch.Generator().manual_seed(1))
    one = perturbation_curves(summing_model(), x, saliency, 0, steps=4, batch_size=1)
    many = perturbation_curves(summing_model(), x, saliency, 0, steps=4, batch_size=64)
    assert one.deletion == pytest.approx(many.deletion)
    assert one.insertion == pytest.approx(many.insertion)


def test_bad_curve_inputs_are_errors() -> None:
    model = summing_model()
    with pytest.raises(ValueError, match="one preprocessed image"):
        perturbation_curves(model, torch.zeros(2, 3, 2, 2), torch.zeros(2, 2), 0)
    with pytest.raises(ValueError, match="the map is"):
        perturbation_curves(model, torch.zeros(1, 3, 2, 2), torch.zeros(3, 3), 0)
    with pytest.raises(ValueError, match="baseline"):
        perturbation_curves(model, torch.zeros(1, 3, 2, 2), torch.zeros(2, 2), 0, baseline="x")


def test_blur_keeps_constants_and_smooths_an_impulse() -> None:
    constant = torch.full((1, 3, 9, 9), 0.7)
    assert torch.allclose(gaussian_blur(constant, sigma=2.0), constant)
    impulse = torch.zeros(1, 1, 9, 9)
    impulse[0, 0, 4, 4] = 1.0
    blurred = gaussian_blur(impulse, sigma=1.0)
    assert blurred.sum() == pytest.approx(1.0, abs=1e-5)  # no reflection reaches the border
    assert blurred[0, 0, 4, 4] == pytest.approx(1 / (2 * np.pi), rel=0.05)  # peak of a 2-D N(0,1)


def test_randomize_block_is_seeded_and_local() -> None:
    def build() -> nn.Sequential:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))

    first, second = build(), build()
    assert parameter_blocks(first, depth=1) == ["0", "2"]
    randomize_block(first, "2", seed=5)
    randomize_block(second, "2", seed=5)
    untouched = build()
    weights = [dict(model.named_parameters()) for model in (first, second, untouched)]
    assert torch.equal(weights[0]["2.weight"], weights[1]["2.weight"])  # same seed, same weights
    assert not torch.equal(weights[0]["2.weight"], weights[2]["2.weight"])  # re-initialized
    assert torch.equal(weights[0]["0.weight"], weights[2]["0.weight"])  # the block below is kept
