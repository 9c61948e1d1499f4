"""A user's own model, made here: a resnet18 colour classifier saved as a checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

import cnnlens

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 40, 220),
    "yellow": (230, 220, 30),
    "purple": (150, 30, 170),
}
SIZE = 32


def small_cnn(outputs: int, seed: int, width: int = 8) -> nn.Sequential:
    """Two ReLU convolutions, global average pooling and a linear head, seeded."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, width, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, outputs),
    )


def colour_images(colour: tuple[int, int, int], count: int, seed: int) -> list[Image.Image]:
    generator = np.random.default_rng(seed)
    pictures = []
    for _ in range(count):
        noise = generator.normal(0, 12, size=(SIZE, SIZE, 3))
        array = np.clip(np.array(colour)[None, None, :] + noise, 0, 255).astype(np.uint8)
        pictures.append(Image.fromarray(array))
    return pictures


@pytest.fixture(scope="module")
def colour_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A resnet18 with a 5-class head fitted to synthetic colour images, saved the
    DataParallel way ({"state_dict": {"module.<key>": ...}}) with a labels file.

    The backbone keeps its seeded random init; the head is a ridge-regression probe on its
    features (one forward pass), so its answers on these colours are known.
    """
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=5).eval()
    prep = cnnlens.models.Preprocessing(input_size=(SIZE, SIZE))
    pictures, classes = [], []
    for index, rgb in enumerate(COLOURS.values()):
        pictures += colour_images(rgb, 6, seed=index)
        classes += [index] * 6
    x = torch.cat([prep(p) for p in pictures])
    with torch.no_grad():
        backbone = nn.Sequential(*list(model.children())[:-1])
        features = backbone(x).flatten(1)  # (30, 512)
    mean, scale = features.mean(0), features.std(0) + 1e-6
    standardized = (features - mean) / scale
    targets = nn.functional.one_hot(torch.tensor(classes), 5).float() * 10 - 5
    design = torch.cat([standardized, torch.ones(len(classes), 1)], dim=1)
    solution = torch.linalg.solve(design.T @ design + 1e-2 * torch.eye(513), design.T @ targets)
    with torch.no_grad():  # fold the standardization into the linear layer
        model.fc.weight.copy_((solution[:-1] / scale[:, None]).T)
        model.fc.bias.copy_(solution[-1] - (mean / scale) @ solution[:-1])
        assert (model(x).argmax(1) == torch.tensor(classes)).all()
    folder = tmp_path_factory.mktemp("colours")
    weights = folder / "colours.pt"
    state = {f"module.{key}": value for key, value in model.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, weights)
    labels = folder / "labels.txt"
    labels.write_text("\n".join(COLOURS) + "\n")
    return weights, labels
