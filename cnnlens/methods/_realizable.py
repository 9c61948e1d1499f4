"""What happens to a saved 8-bit image on its way back into a model, in torch.

An upload is decoded to 8-bit RGB, resized by Pillow (horizontal pass, rounded to 8 bits,
then vertical pass, rounded again), divided by 255 and normalized. The same chain here is
differentiable: rounding passes the gradient straight through (Bengio et al. 2013,
arXiv:1308.3432) and the resize is torch's antialiased kernel, which is Pillow's filter.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cnnlens.imageio import decode_image
from cnnlens.models.hooks import hook_session
from cnnlens.models.loaded import LoadedModel
from cnnlens.render import to_png

LEVELS = 255.0  # 8-bit pixels: 0..255


def quantize(pixels: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] rounded to the 8-bit lattice in the forward pass; identity gradient."""
    rounded = torch.floor(pixels.clamp(0.0, 1.0) * LEVELS + 0.5) / LEVELS
    return pixels + (rounded - pixels).detach()


def resize_like_pil(
    pixels: torch.Tensor, size: tuple[int, int], interpolation: str
) -> torch.Tensor:
    """(1, 3, h, w) 8-bit pixels in [0, 1] -> (1, 3, H, W) as Pillow's `resize` makes them.

    Bilinear and bicubic agree with Pillow to one level on a few pixels in 10^4 (its
    fixed-point weights); nearest gathers the very pixels Pillow picks.
    """
    height, width = size
    if pixels.shape[-2:] == (height, width):
        return pixels  # Pillow returns a copy
    if interpolation == "nearest":
        return _nearest_like_pil(pixels, size)
    resized = pixels
    if resized.shape[-1] != width:  # Pillow skips a pass whose size does not change
        resized = F.interpolate(
            resized, size=(resized.shape[-2], width), mode=interpolation, antialias=True
        )
        resized = quantize(resized)  # the intermediate image is 8-bit too
    if resized.shape[-2] != height:
        resized = F.interpolate(resized, size=(height, width), mode=interpolation, antialias=True)
        resized = quantize(resized)
    return resized


def _nearest_like_pil(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pillow's own choice of source pixel, read by resizing an image of pixel indices."""
    height, width = size
    source_height, source_width = pixels.shape[-2:]
    indices = np.arange(source_height * source_width, dtype=np.int32)
    index_image = Image.fromarray(indices.reshape(source_height, source_width))  # mode "I"
    picked = index_image.resize((width, height), resample=Image.Resampling.NEAREST)
    chosen = torch.from_numpy(np.asarray(picked, dtype=np.int64).copy())
    flat = pixels.flatten(-2)  # (1, 3, h * w)
    return flat[..., chosen.to(pixels.device).flatten()].view(*pixels.shape[:-2], height, width)


def png_roundtrip_probabilities(model: LoadedModel, pngs: list[bytes]) -> torch.Tensor:
    """(B, K) softmax of saved images, decoded and preprocessed exactly as uploads are."""
    x = torch.cat([model.preprocessing(decode_image(png)) for png in pngs]).to(model.device)
    with hook_session(model.module), torch.no_grad():
        logits: torch.Tensor = model.module(x)
    return logits.float().softmax(dim=1).cpu()


def encode(levels: torch.Tensor) -> tuple[Image.Image, bytes]:
    """(3, H, W) whole levels 0..255 -> the RGB image and its PNG bytes."""
    array = levels.to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    image = Image.fromarray(array)
    return image, to_png(image)
