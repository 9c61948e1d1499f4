"""Small segmentation models made in the tests, shared by the segmentation tests of every front."""

from __future__ import annotations

import torch
from torch import nn

import cnnlens


def relu_segmenter() -> nn.Module:
    """A small fully convolutional ReLU network returning (B, 3, H, W) class maps, seeded."""
    torch.manual_seed(5)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2),
        nn.ReLU(inplace=True),
        nn.Conv2d(8, 3, 1),
    ).eval()


def wrapped_segmenter(
    size: int = 24, name: str = "scenes", resize: str = "whole"
) -> cnnlens.LoadedModel:
    """`relu_segmenter` wrapped with labels, its input `size` x `size` (`resize`: the whole
    image, or "center-crop")."""
    return cnnlens.wrap(
        relu_segmenter(),
        labels=["ground", "sky", "water"],
        preprocessing={"input_size": size, "resize": resize},
        name=name,
    )
