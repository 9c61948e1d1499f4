"""Detectors whose answers are known: a colour-square detector built by hand, and a seeded
torchvision Faster R-CNN (for agreement with pytorch-grad-cam)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

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


def pytorch_grad_cam_on_pyramid(detector: nn.Module) -> Any:
    """pytorch-grad-cam's GradCAM on a torchvision detector's feature pyramid (its backbone),
    set up as its Faster R-CNN tutorial sets up its CAMs: `fasterrcnn_reshape_transform`.

    Its own `save_gradient` skips layer outputs without `requires_grad`, so a dict layer (the
    pyramid's) never gets a gradient: the hooks here register it on each level, and the
    levels' gradients go through the reshape_transform, as its hook sends a tensor layer's
    (levels that no score reaches, such as "pool", get zeros).
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients
    from pytorch_grad_cam.utils.reshape_transforms import fasterrcnn_reshape_transform

    class LevelGradients(ActivationsAndGradients):  # type: ignore[misc]
        def save_gradient(self, module: nn.Module, inputs: Any, output: Mapping[str, Any]) -> None:
            self.levels = output
            for key, value in output.items():
                value.register_hook(lambda grad, key=key: self.level_grads.__setitem__(key, grad))

        @property  # type: ignore[override]
        def gradients(self) -> list[torch.Tensor]:
            if not getattr(self, "levels", None):
                return []
            grads = {
                k: self.level_grads.get(k, torch.zeros_like(v)) for k, v in self.levels.items()
            }
            return [self.reshape_transform(grads).cpu().detach()]

        @gradients.setter
        def gradients(self, value: list[torch.Tensor]) -> None:
            self.level_grads: dict[str, torch.Tensor] = {}

    layers = [detector.backbone]
    cam = GradCAM(detector, layers, reshape_transform=fasterrcnn_reshape_transform)
    cam.activations_and_grads.release()
    cam.activations_and_grads = LevelGradients(detector, layers, fasterrcnn_reshape_transform)
    return cam
