"""Figure 11: grad_cam maps of B photos in one `run_methods` call, against B one-image calls.

The photos are preprocessed before timing, and nothing is rendered: this is the model work a
batched request or an audit batch shares, where an accelerator gains most from batching. On
a CPU `run_methods` takes a large batch in heap-sized passes (methods/passes.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from PIL import Image

from benchmarks.audit_throughput import photo_crops
from benchmarks.timing import Timing
from cnnlens.methods.run import run_methods
from cnnlens.models import LoadedModel

METHODS: list[tuple[str, dict[str, Any]]] = [("grad_cam", {})]
ONE_AT_A_TIME = "one image per call"


def inputs(loaded: LoadedModel, count: int, device: torch.device) -> torch.Tensor:
    """(count, 3, H, W): `count` seeded crops of scikit-image's photos, preprocessed."""
    pictures = [Image.fromarray(crop) for crop in photo_crops(count)]
    return torch.cat([loaded.preprocessing(picture) for picture in pictures]).to(device)


def calls(
    loaded: LoadedModel, x: torch.Tensor, sizes: tuple[int, ...]
) -> dict[str, Callable[[], Any]]:
    """`batch B` for each size (one call over the first B images), and every image alone."""

    def batch(count: int) -> Callable[[], Any]:
        return lambda: run_methods(loaded, x[:count], METHODS)

    def one_at_a_time() -> None:
        for row in range(x.shape[0]):
            run_methods(loaded, x[row : row + 1], METHODS)

    return {f"batch {size}": batch(size) for size in sizes} | {ONE_AT_A_TIME: one_at_a_time}


def images_per_s(
    timings: dict[str, Timing], sizes: tuple[int, ...], count: int
) -> dict[str, float]:
    rates = {f"batch {size}": size / timings[f"batch {size}"].median_ms * 1000 for size in sizes}
    rates[ONE_AT_A_TIME] = count / timings[ONE_AT_A_TIME].median_ms * 1000
    return rates


def map_difference(loaded: LoadedModel, x: torch.Tensor) -> float:
    """Largest |batched map - one-image map| over all images, relative to the maps' max."""
    together = run_methods(loaded, x, METHODS).outputs["grad_cam"].map
    alone = torch.cat(
        [run_methods(loaded, x[r : r + 1], METHODS).outputs["grad_cam"].map for r in range(len(x))]
    )
    scale = alone.abs().max().clamp(min=1e-12)
    return float((together - alone).abs().max() / scale)
