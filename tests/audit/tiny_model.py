"""A tiny seeded CNN wrapped as a LoadedModel, and synthetic images: audits at scale in CI time."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from cnnlens.models.loaded import LoadedModel
from cnnlens.models.preprocess import Preprocessing

SIDE = 32


def tiny_loaded(seed: int = 0) -> LoadedModel:
    """conv 3->8 (3x3), ReLU, conv 8->8, ReLU, global pool, linear 8->4; weights seeded."""
    torch.manual_seed(seed)
    module = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    ).eval()  # fmt: skip
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return LoadedModel(
        name="tiny",
        module=module,
        preprocessing=Preprocessing(input_size=(SIDE, SIDE), mean=(0.5,) * 3, std=(0.5,) * 3),
        categories=("red", "green", "blue", "grey"),
        weights_sha256=None,
        weights_source="seeded in the test",
    )


def synthetic_png(index: int, side: int = SIDE) -> bytes:
    """A small deterministic PNG: a coloured square on noise."""
    rng = np.random.default_rng(index)
    pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    corner = index % (side // 2)
    pixels[corner : corner + side // 2, corner : corner + side // 2, index % 3] = 255
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def write_synthetic(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        (folder / f"img{index:06d}.png").write_bytes(synthetic_png(index))
    return folder
