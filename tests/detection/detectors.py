"""Detectors whose answers are known: a colour-square detector built by hand, and a seeded
torchvision Faster R-CNN (for agreement with pytorch-grad-cam)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn
from torchvision.ops import batched_nms

SIZE = 128  # the square detector's input side
SQUARE = 32  # the object side it detects best, pixels
STRIDE = 8
COLOURS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}
LABELS = ["background", *COLOURS]
PREPROCESSING = {"input_size": [SIZE, SIZE], "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}


class ColourPyramid(nn.Module):
    """Two levels of colour evidence, like a feature pyramid's: (B, 3, H/4, W/4) and
    (B, 3, H/8, W/8); channel c is how much more of colour c a pixel has than the others."""

    def __init__(self) -> None:
        super().__init__()
        self.colour = nn.Conv2d(3, 3, kernel_size=1, bias=False)
        self.relu = nn.ReLU()
        self.fine = nn.AvgPool2d(4)
        self.coarse = nn.AvgPool2d(2)
        with torch.no_grad():  # c - (the two others) / 2
            self.colour.weight.copy_((1.5 * torch.eye(3) - 0.5).view(3, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        fine = self.fine(self.relu(self.colour(x)))
        return OrderedDict([("0", fine), ("1", self.coarse(fine))])


class SquareDetector(nn.Module):
    """Detects SQUARE-pixel squares of pure red, green or blue (labels 1, 2, 3).

    Every 32 x 32 window at a stride of 8 px is a candidate box of each colour, scored
    sigmoid(20 (mean colour evidence over the window - 0.7)); candidates above 0.05 go
    through per-class NMS at IoU 0.5. A square on the grid scores 0.9975; windows shifted
    by 8 px score 0.73 (suppressed) or less than 0.5. Its output is torchvision's
    detectors': per image {"boxes", "labels", "scores"}; its "backbone" outputs a dict of
    levels.
    """

    def __init__(self) -> None:
        super().__init__()
        self.backbone = ColourPyramid()
        cells = SQUARE // STRIDE
        self.head = nn.Conv2d(3, 3, kernel_size=cells, bias=True, groups=3)
        with torch.no_grad():
            self.head.weight.fill_(20.0 / cells**2)
            self.head.bias.fill_(-14.0)

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        levels = self.backbone(x)
        scores = torch.sigmoid(self.head(levels["1"]))  # (B, 3, h, w)
        _, classes, rows, cols = scores.shape
        ys, xs = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
        corners = torch.stack([xs, ys, xs, ys], dim=-1).reshape(-1, 4).float() * STRIDE
        boxes = corners + torch.tensor([0.0, 0.0, SQUARE, SQUARE])  # (h*w, 4)
        found = []
        for image_scores in scores:
            flat = image_scores.reshape(classes, -1)  # (3, h*w)
            keep = flat > 0.05
            label, position = torch.nonzero(keep, as_tuple=True)
            kept_scores = flat[label, position]
            kept_boxes = boxes[position].to(x.dtype)
            order = batched_nms(kept_boxes, kept_scores.detach(), label, 0.5)[:100]
            found.append(
                {
                    "boxes": kept_boxes[order],
                    "labels": label[order] + 1,
                    "scores": kept_scores[order],
                }
            )
        return found


def square_image(
    squares: list[tuple[str, int, int]], size: int = SIZE, side: int = SQUARE, seed: int = 0
) -> Image.Image:
    """A gray, lightly noisy image with squares (colour, left, top) of `side` pixels."""
    rng = np.random.default_rng(seed)
    pixels = 0.5 + 0.05 * rng.standard_normal((size, size, 3))
    for colour, left, top in squares:
        pixels[top : top + side, left : left + side] = COLOURS[colour]
    return Image.fromarray((pixels.clip(0, 1) * 255).round().astype(np.uint8))


def seeded_fasterrcnn(seed: int = 0) -> nn.Module:
    """torchvision's fasterrcnn_mobilenet_v3_large_320_fpn with seeded random weights, every
    detection kept (box_score_thresh 0): random weights score all about 1/91."""
    torch.manual_seed(seed)
    return torchvision.models.get_model(
        "fasterrcnn_mobilenet_v3_large_320_fpn",
        weights=None,
        weights_backbone=None,
        box_score_thresh=0.0,
    ).eval()
