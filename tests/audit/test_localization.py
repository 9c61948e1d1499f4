"""Box energy, the pointing game and degenerate maps on hand-made maps."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlens.audit.localization import boxes_to_mask, energy_share, is_degenerate, pointing_hit


def test_boxes_to_mask_clips_and_unions() -> None:
    mask = boxes_to_mask([(1, 1, 3, 4), (8, 8, 20, 20)], height=10, width=10)
    assert mask.sum() == 2 * 3 + 2 * 2
    assert mask[1:4, 1:3].all() and mask[8:, 8:].all()
    assert not mask[0].any()


def test_energy_share_by_hand() -> None:
    saliency = np.zeros((4, 6))
    saliency[1, 1] = 3.0  # inside the box
    saliency[2, 2] = 1.0  # inside
    saliency[0, 5] = 4.0  # outside
    box = boxes_to_mask([(1, 1, 3, 3)], 4, 6)  # rows 1-2, columns 1-2
    assert energy_share(saliency, box) == pytest.approx(4.0 / 8.0)
    signed = saliency.copy()
    signed[0, 5] = -4.0  # magnitude counts, not sign
    assert energy_share(signed, box) == pytest.approx(0.5)
    assert energy_share(np.zeros((4, 6)), box) is None


def test_pointing_game_hit_miss_and_tolerance() -> None:
    saliency = np.zeros((40, 40))
    saliency[5, 30] = 1.0  # the maximum, at (y=5, x=30)
    box = boxes_to_mask([(10, 10, 20, 20)], 40, 40)  # x 10-19, y 10-19
    assert pointing_hit(saliency, box, tolerance=0) is False
    # nearest box pixel: (y=10, x=19): distance sqrt(5^2 + 11^2) = 12.08
    assert pointing_hit(saliency, box, tolerance=12) is False
    assert pointing_hit(saliency, box, tolerance=13) is True
    saliency[15, 15] = 2.0
    assert pointing_hit(saliency, box, tolerance=0) is True
    assert pointing_hit(np.ones((40, 40)), box) is None  # constant: no maximum to point with
    assert pointing_hit(saliency, np.zeros((40, 40), dtype=bool)) is None


def test_degenerate_maps() -> None:
    assert is_degenerate(np.full((7, 7), 0.3))
    assert is_degenerate(np.zeros((7, 7)))
    with_nan = np.random.default_rng(0).random((7, 7))
    with_nan[3, 3] = np.nan
    assert is_degenerate(with_nan)
    assert is_degenerate(np.array([[1.0, np.inf]]))
    assert not is_degenerate(np.random.default_rng(0).random((7, 7)))
