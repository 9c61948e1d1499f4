"""Seeded torchvision models (weights=None) and small photos for the library-backed methods."""

from __future__ import annotations

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn

from cnnlens.models.preprocess import Preprocessing

SIDE = 64  # small inputs keep the references fast; every layer still has a spatial map
TARGETS = [3, 7]
PREPROCESSING = Preprocessing()  # ImageNet statistics, as a plain module gets


def seeded(name: str, **kwargs: object) -> nn.Module:
    """torchvision's `name` with random weights from a fixed seed, 10 classes, in eval mode."""
    torch.manual_seed(0)
    model: nn.Module = getattr(torchvision.models, name)(weights=None, num_classes=10, **kwargs)
    for module in model.modules():  # batch norms with statistics of their own, not 0 and 1
        if isinstance(module, nn.BatchNorm2d):
            generator = torch.Generator().manual_seed(module.num_features)
            module.running_mean.uniform_(-0.2, 0.2, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.uniform_(-0.2, 0.2, generator=generator)
    return model.eval()


def photos(side: int = SIDE) -> torch.Tensor:
    """(2, 3, side, side) scikit-image's chelsea() and coffee(), normalized."""
    from skimage import data

    pictures = [
        np.asarray(Image.fromarray(image()).resize((side, side), Image.Resampling.BICUBIC))
        for image in (data.chelsea, data.coffee)
    ]
    pixels = torch.tensor(np.stack(pictures), dtype=torch.float32).permute(0, 3, 1, 2) / 255
    return PREPROCESSING.normalize(pixels)


def black(x: torch.Tensor) -> torch.Tensor:
    return PREPROCESSING.normalize(torch.zeros_like(x))


def white(x: torch.Tensor) -> torch.Tensor:
    return PREPROCESSING.normalize(torch.ones_like(x))


def assert_equal_maps(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """Equal to float tolerance, relative to the map's scale (reduction order follows the
    thread count)."""
    theirs = theirs.detach()
    scale = float(theirs.abs().max())
    assert scale > 0
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5 * scale)
