"""Input gradients of the target scores for many perturbed copies of a batch, in chunks.

Path and noise methods (integrated gradients, SmoothGrad) evaluate the same gradient at many
points. Rows (point, sample) go `batch_size` at a time, whatever the number of points or
samples, and each point is built once, when its first row is due: peak memory follows the
chunk, not the number of points.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from cnnlens.methods.base import Method, MethodParams
from cnnlens.methods.workload import Cost, Workload, chunked, cost_field
from cnnlens.models.hooks import hook_session
from cnnlens.targets import Target

Transform = Callable[[torch.Tensor], torch.Tensor] | None


class BatchedGradientParams(MethodParams):
    """Params of the methods built on `mean_input_gradients`: how many rows go at once."""

    batch_size: int = cost_field(
        8,  # about 0.7 GB kept for the backward on efficientnet_lite0 at 224 x 224
        "memory",
        "rows per forward/backward (bounds memory)",
    )


def mean_input_gradients(
    model: nn.Module,
    like: torch.Tensor,
    points: Callable[[int], torch.Tensor],
    count: int,
    target: Target,
    weights: torch.Tensor,
    batch_size: int,
    transforms: Sequence[Transform] = (None,),
) -> list[torch.Tensor]:
    """For each transform T: sum_s weights[s] * T(d S_target / d x at points(s)), s < count,
    all from the same gradients (VarGrad's first and second moments).

    Args:
        model: classifier returning logits.
        like: (B, 3, H, W) a tensor of the points' shape, dtype and device.
        points: s -> (B, 3, H, W) the s-th evaluation point for every sample; called once
            per s, in increasing order (so a seeded generator may draw inside it).
        count: number of points per sample.
        target: the resolved target of the B samples (its `score` is differentiated).
        weights: (count,) weight of each point (quadrature weights or 1/count).
        batch_size: rows per forward/backward.
        transforms: each T applied to each point's gradient before weighting (None: identity).
    """
    batch = like.shape[0]
    totals = [torch.zeros_like(like) for _ in transforms]
    current: list[tuple[int, torch.Tensor]] = []  # the one point being consumed

    def point(s: int) -> torch.Tensor:
        if not current or current[0][0] != s:
            current[:] = [(s, points(s))]
        return current[0][1]

    total_rows = count * batch
    with hook_session(model) as session, torch.enable_grad():
        for start in range(0, total_rows, batch_size):
            stop = min(total_rows, start + batch_size)
            pieces: list[tuple[int, int, int]] = []  # (point, first sample, end sample)
            row = start
            while row < stop:
                s, first = divmod(row, batch)
                end = min(batch, first + stop - row)
                pieces.append((s, first, end))
                row += end - first
            chunk = torch.cat([point(s)[first:end] for s, first, end in pieces])  # (n, 3, H, W)
            rows = torch.cat([torch.arange(first, end) for _, first, end in pieces])  # (n,)
            logits = session.forward(chunk, input_grad=True)
            scores = target.score(logits, rows)
            assert session.input is not None
            (gradient,) = session.gradients(scores, [session.input], retain_graph=False)
            for total, transform in zip(totals, transforms, strict=True):
                transformed = gradient if transform is None else transform(gradient)
                offset = 0
                for s, first, end in pieces:
                    total[first:end] += weights[s] * transformed[offset : offset + end - first]
                    offset += end - first
    return totals


class BatchedGradientMethod(Method):
    """A method that calls `mean_input_gradients` once: its cost follows the number of points."""

    kind = "standalone"
    # Input-sized tensors kept through the call, per row: by default the input and the sum.
    resident_inputs: ClassVar[int] = 2

    @abstractmethod
    def points(self, params: Any) -> int:
        """How many points per sample the gradient is averaged over."""

    def cost(self, params: BatchedGradientParams, workload: Workload) -> Cost:
        rows = self.points(params) * workload.rows  # perturbed inputs, in chunks
        return Cost.of(
            forwards=rows,
            backwards=rows,
            peak_rows=chunked(rows, params.batch_size),
            gradient="input",
            resident_values=self.resident_inputs * workload.rows * workload.input_values,
        )
