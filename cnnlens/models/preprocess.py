"""Turns RGB images into the normalized input batches a model expects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

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

    The whole image is resized (no crop) so that every map covers all of it. `channels` 1
    means grayscale input (mean and std then hold one value each).
    """

    input_size: tuple[int, int] = (224, 224)  # (H, W)
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    resize: str = "whole"
    channels: int = 3

    def __post_init__(self) -> None:
        from cnnlens.errors import InvalidParamsError

        if self.channels not in (1, 3):
            raise InvalidParamsError(
                f"models with {self.channels} input channels are not supported (1 or 3)"
            )
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise InvalidParamsError(
                f"preprocessing: mean and std need {self.channels} value(s) each"
            )
        if self.interpolation not in _RESAMPLING:
            raise InvalidParamsError(
                f"preprocessing: interpolation must be one of {', '.join(_RESAMPLING)}"
            )
        if self.resize != "whole":
            raise InvalidParamsError('preprocessing: resize must be "whole"')

    @classmethod
    def from_mapping(
        cls, values: Mapping[str, Any], base: Preprocessing | None = None
    ) -> Preprocessing:
        """Preprocessing from a dict (e.g. a configuration table) over `base`'s values."""
        from cnnlens.errors import InvalidParamsError

        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidParamsError(
                f"unknown preprocessing keys {unknown}; known: {sorted(known)}"
            )
        merged: dict[str, Any] = {f.name: getattr(base or cls(), f.name) for f in fields(cls)}
        merged.update(values)
        size = merged["input_size"]
        merged["input_size"] = (int(size), int(size)) if isinstance(size, int) else tuple(size)
        merged["mean"] = tuple(float(v) for v in merged["mean"])
        merged["std"] = tuple(float(v) for v in merged["std"])
        if "channels" in values and "mean" not in values and merged["channels"] == 1:
            merged["mean"], merged["std"] = (0.5,), (0.5,)
        return cls(**merged)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """One image -> (1, C, H, W) float32, normalized (C = 3, or 1 for grayscale)."""
        height, width = self.input_size
        mode = "L" if self.channels == 1 else "RGB"
        resized = image.convert(mode).resize(
            (width, height), resample=_RESAMPLING[self.interpolation]
        )
        array = np.array(resized, dtype=np.float32) / 255.0
        if array.ndim == 2:
            array = array[:, :, None]
        pixels = torch.from_numpy(array)  # (H, W, C)
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
        """Size of one 0-1 pixel unit in input space per channel, (1, C, 1, 1)."""
        _, std = self._stats(x)
        return 1.0 / std

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
        return mean, std

    def to_image(self, x: torch.Tensor) -> Image.Image:
        """(1, 3, H, W) or (3, H, W) input-space tensor -> RGB PIL image."""
        if x.dim() == 3:
            x = x.unsqueeze(0)
        pixels = self.denormalize(x.detach().float().cpu())[0].clamp(0, 1)
        array = (pixels.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
        if array.shape[2] == 1:
            return Image.fromarray(array[:, :, 0], mode="L").convert("RGB")
        return Image.fromarray(array)
