"""Turns RGB images into the normalized input batches a model expects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from PIL import Image

from cnnlens.models.framing import Framing, framing_of

WHOLE = "whole"
CENTER_CROP = "shorter-side + center-crop"
# Spellings accepted for `resize`, each stored as its canonical value.
_RESIZE_ALIASES = {
    "whole": WHOLE,
    "shorter-side + center-crop": CENTER_CROP,
    "shorter-side+center-crop": CENTER_CROP,
    "center-crop": CENTER_CROP,
    "center_crop": CENTER_CROP,
}
CROP_RATIO = 0.875  # torchvision's: 224 px crops of 256 px images

_RESAMPLING = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


@dataclass(frozen=True)
class Preprocessing:
    """How one model wants its pixels: size, resampling and per-channel normalization.

    `resize`: "whole" resizes the whole image to the input size (every map covers all of
    it); "shorter-side + center-crop" (alias "center-crop") resizes the shorter side to
    `resize_size` (default: the input size / 0.875, 256 for 224) and takes the center
    crop, as most training pipelines do; maps then cover the crop, and the border outside
    it is NaN (not explained). `channels` 1 means grayscale input (mean and std then hold
    one value each).
    """

    input_size: tuple[int, int] = (224, 224)  # (H, W)
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    resize: str = WHOLE
    channels: int = 3
    resize_size: int | None = None  # center crop: the shorter side's size before the crop

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
        resize = _RESIZE_ALIASES.get(str(self.resize).strip().lower())
        if resize is None:
            raise InvalidParamsError(
                f'preprocessing: resize must be "{WHOLE}" or "{CENTER_CROP}" ("center-crop")'
            )
        object.__setattr__(self, "resize", resize)
        if resize == CENTER_CROP and self.resize_size is None:
            size = round(max(self.input_size) / CROP_RATIO)
            object.__setattr__(self, "resize_size", size)
        if resize == WHOLE and self.resize_size is not None:
            raise InvalidParamsError('preprocessing: resize_size needs resize "center-crop"')
        if self.resize_size is not None and self.resize_size < max(self.input_size):
            raise InvalidParamsError(
                f"preprocessing: resize_size {self.resize_size} is smaller than the input "
                f"size {max(self.input_size)}"
            )

    @property
    def source_side(self) -> int:
        """The shortest side from which preprocessing only scales an image down."""
        return max(self.resize_size or 0, *self.input_size)

    def framing(self, width: int, height: int) -> Framing:
        """Where the input lies on a width x height image (see `cnnlens.models.framing`)."""
        return framing_of(width, height, self.input_size, self.resize_size)

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
        if "resize_size" not in values and ({"input_size", "resize"} & set(values)):
            merged["resize_size"] = None  # derived again from the new size or mode
        if merged["resize_size"] is not None:
            merged["resize_size"] = int(merged["resize_size"])
        size = merged["input_size"]
        merged["input_size"] = (int(size), int(size)) if isinstance(size, int) else tuple(size)
        merged["mean"] = tuple(float(v) for v in merged["mean"])
        merged["std"] = tuple(float(v) for v in merged["std"])
        if "channels" in values and "mean" not in values and merged["channels"] == 1:
            merged["mean"], merged["std"] = (0.5,), (0.5,)
        return cls(**merged)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """One image -> (1, C, H, W) float32, normalized (C = 3, or 1 for grayscale)."""
        frame = self.framing(image.width, image.height)
        mode = "L" if self.channels == 1 else "RGB"
        source = image if image.mode == mode else image.convert(mode)  # convert() would copy
        resized = source.resize(
            (frame.resized_width, frame.resized_height), resample=_RESAMPLING[self.interpolation]
        )
        if frame.cropped:
            right, bottom = frame.left + frame.input_width, frame.top + frame.input_height
            resized = resized.crop((frame.left, frame.top, right, bottom))
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
