"""Counting passes through a model, for tests: rows per forward and rows per backward."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class Passes:
    forward_batches: list[int] = field(default_factory=list)  # rows of each forward call
    backward_batches: list[int] = field(default_factory=list)  # rows of each backward

    @property
    def forwards(self) -> int:
        return sum(self.forward_batches)

    @property
    def backwards(self) -> int:
        return sum(self.backward_batches)

    @property
    def largest_batch(self) -> int:
        return max(self.forward_batches, default=0)


@contextmanager
def counting(model: nn.Module) -> Iterator[Passes]:
    """Record the batch size of every forward of `model` (a forward-pre-hook) and of every
    backward through its output (a tensor hook on the logits); all removed on exit."""
    passes = Passes()

    def before(module: nn.Module, inputs: tuple[Any, ...]) -> None:
        passes.forward_batches.append(int(inputs[0].shape[0]))

    def after(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        if output.requires_grad:
            rows = int(output.shape[0])
            output.register_hook(lambda grad: passes.backward_batches.append(rows))

    handles = [model.register_forward_pre_hook(before), model.register_forward_hook(after)]
    try:
        yield passes
    finally:
        for handle in handles:
            handle.remove()
