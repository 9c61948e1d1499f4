"""How many images one model pass takes on a CPU, so that its tensors reuse the heap.

glibc's malloc serves an allocation above its mmap threshold (which rises to at most 32 MiB)
with a fresh mapping, and every page of a fresh mapping faults on first touch. A batch of 32
through efficientnet_lite0 makes tensors of 150 MB and spent more time in those page faults
than in its convolutions (an audit ran 2x slower than in passes of 8). Passes whose largest
activation stays under the threshold reuse the heap from one pass to the next. Accelerators
have caching allocators and take the whole batch.
"""

from __future__ import annotations

import math

import torch

from cnnlens.models.layers import LayerInventory

HEAP_REUSE_BYTES = 32 << 20


def rows_per_pass(
    inventory: LayerInventory, device: torch.device | str, element_bytes: int = 4
) -> int | None:
    """The most images per pass on a CPU (at least 1), or None (no limit) elsewhere.

    `inventory`: the model's layers traced at the size of the images passed.
    """
    if torch.device(device).type != "cpu":
        return None
    sizes = [math.prod(layer.output_shape) for layer in inventory.layers if layer.output_shape]
    largest = max(sizes, default=1) * element_bytes
    return max(1, HEAP_REUSE_BYTES // largest)
