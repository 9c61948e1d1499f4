"""How many images one model pass takes on a CPU, so that its tensors reuse the heap.

glibc's malloc serves an allocation above its mmap threshold (which rises to at most 32 MiB)
with a fresh mapping, and every page of a fresh mapping faults on first touch. A batch of 32
through efficientnet_lite0 makes tensors of 150 MB and spent more time in those page faults
than in its convolutions (an audit ran 2x slower than in passes of 8). Passes whose largest
activation stays under the threshold reuse the heap from one pass to the next. Accelerators
have caching allocators and take the whole batch. `run_methods` takes its shared gradient
pass in such passes (64 photos: 0.76x the images/s of one-image calls in one pass, about 1.5x
in passes of 6); audits split every method's work this way.

A pass without gradients frees each tensor as the forward moves on, and glibc gives the freed
top of its heap back to the kernel once more than twice the threshold lies free there, so the
next pass faults again: passes of a third of the threshold kept the faults away (perturbation
curves of efficientnet_lite0: 2 images a pass ran 1.4-2.5x faster than 16 and faulted
nowhere; 4-8 images still faulted 0.2-0.4 million pages per curve).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cnnlens.errors import IncompatibleModelError
from cnnlens.heap import MMAP_THRESHOLD_BYTES
from cnnlens.models.layers import LayerInventory
from cnnlens.models.loaded import LoadedModel


def rows_per_pass(
    inventory: LayerInventory,
    device: torch.device | str,
    gradients: bool = True,
    element_bytes: int = 4,
) -> int | None:
    """The most images per pass on a CPU (at least 1), or None (no limit) elsewhere.

    `inventory`: the model's layers traced at the size of the images passed; `gradients`:
    whether the pass keeps its activations for a backward (False: a no-grad forward).
    """
    if torch.device(device).type != "cpu":
        return None
    sizes = [math.prod(layer.output_shape) for layer in inventory.layers if layer.output_shape]
    largest = max(sizes, default=1) * element_bytes
    budget = MMAP_THRESHOLD_BYTES if gradients else MMAP_THRESHOLD_BYTES // 3
    return max(1, budget // largest)


def heap_rows(
    model: LoadedModel | nn.Module, x: torch.Tensor, gradients: bool = True
) -> int | None:
    """`rows_per_pass` for `x`'s images through `model` (None off a CPU, and for a model
    without a spatial layer: no activation of it is large enough to matter)."""
    from cnnlens.methods.run import inventory_of  # run_methods sizes its passes here too

    if x.device.type != "cpu":
        return None  # decided before tracing anything
    try:
        inventory = inventory_of(model, (int(x.shape[-2]), int(x.shape[-1])), x.shape[1])
    except IncompatibleModelError:
        return None
    return rows_per_pass(inventory, x.device, gradients)
