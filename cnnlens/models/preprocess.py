"""Turns RGB images into the normalized input batches a model expects."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

_RESAMPLING = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


@dataclass(frozen=True)
class Preprocessing:
    """How one model wants its pixels: size, resampling and per-channel normalization.

    The whole image is resized (no crop) so that every map covers all of it.
    """

    input_size: tuple[int, int] = (224, 224)  # (H, W)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """One RGB image -> (1, 3, H, W) float32, normalized."""
        height, width = self.input_size
        resized = image.convert("RGB").resize(
            (width, height), resample=_RESAMPLING[self.interpolation]
        )
        pixels = torch.from_numpy(np.array(resized, dtype=np.float32) / 255.0)  # (H, W, 3)
        return self.normalize(pixels.permute(2, 0, 1).unsqueeze(0))

    def normalize(self, unit_pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1], (B, 3, H, W) -> model input space."""
        mean, std = self._stats(unit_pixels)
        return (unit_pixels - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Model input space -> pixels in [0, 1] (not clamped)."""
        mean, std = self._stats(x)
        return x * std + mean

    def pixel_scale(self, x: torch.Tensor) -> torch.Tensor:
        """Size of one 0-1 pixel unit in input space per channel, (1, 3, 1, 1)."""
        _, std = self._stats(x)
        return 1.0 / std

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)
        return mean, std

    def to_image(self, x: torch.Tensor) -> Image.Image:
        """(1, 3, H, W) or (3, H, W) input-space tensor -> RGB PIL image."""
        if x.dim() == 3:
            x = x.unsqueeze(0)
        pixels = self.denormalize(x.detach().float().cpu())[0].clamp(0, 1)
        array = (pixels.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
        return Image.fromarray(array)
