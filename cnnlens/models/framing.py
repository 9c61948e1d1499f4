"""Where a model's input lies on the original image: the resize and center crop, both ways.

With `resize="whole"` the input is the whole image resized; with "shorter-side +
center-crop" it is the center of the image resized so its shorter side is `resize_size`
(torchvision's Resize(s) then CenterCrop). Maps come back over the whole original image:
the crop's map at its place, the cropped-away border NaN (not explained).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cnnlens import render
from cnnlens.models.regions import Box, RegionError, check_box


@dataclass(frozen=True)
class Framing:
    """One image's framing: resized to (resized_width, resized_height), then the input-size
    window at (left, top) of it is the model's input."""

    width: int  # the original image's
    height: int
    resized_width: int
    resized_height: int
    left: int
    top: int
    input_width: int
    input_height: int

    @property
    def cropped(self) -> bool:
        return (self.resized_width, self.resized_height) != (self.input_width, self.input_height)

    @property
    def explained_box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the original image's pixels the input covers (x1, y1 exclusive)."""
        sx, sy = self.width / self.resized_width, self.height / self.resized_height
        return (
            round(self.left * sx),
            round(self.top * sy),
            round((self.left + self.input_width) * sx),
            round((self.top + self.input_height) * sy),
        )

    def box_to_input(self, box: Sequence[float]) -> Box:
        """A box in the original image's pixels -> the same box in input pixels (clipped to
        the explained part; a box wholly outside it is an error)."""
        x0, y0, x1, y1 = check_box(box, self.width, self.height)
        sx, sy = self.resized_width / self.width, self.resized_height / self.height
        inside = (
            max(0.0, x0 * sx - self.left),
            max(0.0, y0 * sy - self.top),
            min(float(self.input_width), x1 * sx - self.left),
            min(float(self.input_height), y1 * sy - self.top),
        )
        if not (inside[0] < inside[2] and inside[1] < inside[3]):
            raise RegionError(
                f"region {','.join(f'{v:g}' for v in box)} lies outside the explained part "
                f"{self.explained_box} of the image (center crop)"
            )
        return inside

    def box_from_input(self, box: Sequence[float]) -> tuple[int, int, int, int]:
        """A box in input pixels -> the same box in the original image's pixels (rounded
        outwards, clipped to the image): where an activation's receptive field lies."""
        sx, sy = self.width / self.resized_width, self.height / self.resized_height
        x0, y0, x1, y1 = box
        return (
            max(0, int(np.floor((x0 + self.left) * sx))),
            max(0, int(np.floor((y0 + self.top) * sy))),
            min(self.width, int(np.ceil((x1 + self.left) * sx))),
            min(self.height, int(np.ceil((y1 + self.top) * sy))),
        )

    def mask_to_input(self, mask: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(H, W) mask over the original image -> (h, w) share of each input pixel it covers."""
        values = torch.as_tensor(np.asarray(mask)).float()
        if tuple(values.shape) != (self.height, self.width):
            raise RegionError(
                f"a region mask must have the image's size {self.height} x {self.width}, "
                f"got {tuple(values.shape)}"
            )
        resized = F.adaptive_avg_pool2d(
            values[None, None], (self.resized_height, self.resized_width)
        )[0, 0]
        return resized[
            self.top : self.top + self.input_height, self.left : self.left + self.input_width
        ]

    def place(self, raw: torch.Tensor | np.ndarray) -> np.ndarray:
        """(C, h, w) or (h, w) input-space map -> over the original image, NaN outside the
        explained part (C = 1 is squeezed)."""
        if not self.cropped:
            resized = render.resize_map(raw, (self.height, self.width))
        else:
            x0, y0, x1, y1 = self.explained_box  # inside the image: the crop fits
            inner = render.resize_map(raw, (max(1, y1 - y0), max(1, x1 - x0)))
            resized = np.full((*inner.shape[:-2], self.height, self.width), np.nan, np.float32)
            resized[..., y0 : y0 + inner.shape[-2], x0 : x0 + inner.shape[-1]] = inner
        return resized[0] if resized.ndim == 3 and resized.shape[0] == 1 else resized


def framing_of(
    width: int,
    height: int,
    input_size: tuple[int, int],
    resize_size: int | None,
) -> Framing:
    """The framing of a width x height image: whole (resize_size None) or shorter side to
    `resize_size` and the center `input_size` crop (torchvision's rounding)."""
    input_height, input_width = input_size
    if resize_size is None:
        return Framing(width, height, input_width, input_height, 0, 0, input_width, input_height)
    if width <= height:
        resized_width, resized_height = resize_size, int(resize_size * height / width)
    else:
        resized_width, resized_height = int(resize_size * width / height), resize_size
    # An image too elongated for the crop is scaled up until the crop fits.
    grow = max(input_width / resized_width, input_height / resized_height, 1.0)
    if grow > 1.0:
        resized_width = max(input_width, round(resized_width * grow))
        resized_height = max(input_height, round(resized_height * grow))
    left = int(round((resized_width - input_width) / 2.0))
    top = int(round((resized_height - input_height) / 2.0))
    return Framing(
        width, height, resized_width, resized_height, left, top, input_width, input_height
    )
