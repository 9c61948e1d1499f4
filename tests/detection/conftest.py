"""Detectors and images for the detection tests."""

from __future__ import annotations

import pytest
import torch

import cnnlens
from cnnlens.models import LoadedModel
from tests.detection.detectors import LABELS, PREPROCESSING, SquareDetector, square_image

RED_AND_BLUE = [("red", 16, 24), ("blue", 72, 80)]  # two squares on the detector's grid
RED_BOX = (16.0, 24.0, 48.0, 56.0)
BLUE_BOX = (72.0, 80.0, 104.0, 112.0)


@pytest.fixture
def squares() -> LoadedModel:
    """The colour-square detector, wrapped."""
    detector = SquareDetector().eval()
    return cnnlens.wrap(detector, labels=LABELS, preprocessing=PREPROCESSING, name="squares")


@pytest.fixture
def two_squares(squares: LoadedModel) -> torch.Tensor:
    """(1, 3, 128, 128) a red and a blue square, preprocessed."""
    return squares.preprocessing(square_image(RED_AND_BLUE))
