"""Images under optimization: plain pixels, or a decorrelated Fourier spectrum.

Both give pixels in [0, 1], (B, 3, H, W), and know how to blur themselves in place.
The Fourier form follows Olah et al., "Feature Visualization", Distill 2017: the spectrum is
scaled by 1/f so every frequency learns at the same pace, colours are decorrelated with the
square root of ImageNet's colour covariance, and a sigmoid keeps pixels in range.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Square root of ImageNet's RGB covariance (its SVD factors), as published with "Feature
# Visualization"; columns normalized below so the largest has unit norm.
_COLOR_CORRELATION_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]]
)
_COLOR_CORRELATION_NORMALIZED = _COLOR_CORRELATION_SQRT / _COLOR_CORRELATION_SQRT.norm(dim=0).max()


class PixelImage(nn.Module):
    """Pixels are the parameter; they are clamped to [0, 1] after each step."""

    def __init__(self, start: torch.Tensor) -> None:
        super().__init__()
        self.values = nn.Parameter(start.clone())  # (B, 3, H, W) pixels

    def pixels(self) -> torch.Tensor:
        return self.values

    @torch.no_grad()
    def project(self) -> None:
        self.values.clamp_(0.0, 1.0)

    @torch.no_grad()
    def blur(self, sigma: float) -> None:
        self.values.copy_(gaussian_blur(self.values, sigma))


class FourierImage(nn.Module):
    """pixels = sigmoid(C · irfft2(spectrum / f)), C the colour decorrelation (3, 3)."""

    frequencies: torch.Tensor  # (H, W//2+1) buffer, cycles per pixel
    scale: torch.Tensor  # (H, W//2+1) buffer, 1/f

    def __init__(self, shape: tuple[int, ...], noise: torch.Tensor) -> None:
        super().__init__()
        batch, channels, height, width = shape
        self.size = (height, width)
        frequencies = _frequencies(height, width, noise.device)  # (H, W//2+1) cycles/pixel
        self.register_buffer("frequencies", frequencies)
        self.register_buffer("scale", 1.0 / frequencies.clamp(min=1.0 / max(height, width)))
        self.spectrum = nn.Parameter(noise.clone())  # (B, 3, H, W//2+1, 2) real, imaginary

    def pixels(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        image = torch.fft.irfft2(spectrum, s=self.size, norm="ortho") / 4.0  # (B, 3, H, W)
        color = _COLOR_CORRELATION_NORMALIZED.to(image)
        return torch.sigmoid(torch.einsum("ij,bjhw->bihw", color, image))

    def project(self) -> None:
        """The sigmoid already keeps pixels in range."""

    @torch.no_grad()
    def blur(self, sigma: float) -> None:
        # A Gaussian blur is a product in frequency space: exp(-2 pi^2 sigma^2 f^2).
        transfer = torch.exp(-2 * math.pi**2 * sigma**2 * self.frequencies**2)
        self.spectrum.mul_(transfer.unsqueeze(-1))

    @staticmethod
    def spectrum_shape(batch: int, height: int, width: int) -> tuple[int, ...]:
        return (batch, 3, height, width // 2 + 1, 2)


def _frequencies(height: int, width: int, device: torch.device) -> torch.Tensor:
    rows = torch.fft.fftfreq(height, device=device).view(-1, 1)
    cols = torch.fft.rfftfreq(width, device=device).view(1, -1)
    return torch.sqrt(rows**2 + cols**2)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with reflected borders."""
    if sigma <= 0:
        return images
    height, width = images.shape[-2:]
    radius = max(1, min(math.ceil(3 * sigma), height - 1, width - 1))  # reflect needs < size
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    padded = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    horizontal = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    vertical = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    blurred = F.conv2d(padded, horizontal, groups=channels)
    return F.conv2d(blurred, vertical, groups=channels)
