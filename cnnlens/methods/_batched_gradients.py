"""Input gradients of the target scores for many perturbed copies of a batch, in chunks.

Path and noise methods (integrated gradients, SmoothGrad) evaluate the same gradient at many
points; chunking by `batch_size` bounds peak memory by the chunk, not by the number of points.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from cnnlens.models.hooks import hook_session


def mean_input_gradient(
    model: nn.Module,
    points: Callable[[int], torch.Tensor],
    count: int,
    targets: torch.Tensor,
    weights: torch.Tensor,
    batch_size: int,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """sum_s weights[s] * T(d S_target / d x at points(s)), for s in range(count).

    Args:
        model: classifier returning logits.
        points: s -> (B, 3, H, W) the s-th evaluation point for every sample.
        count: number of points per sample.
        targets: (B,) class per sample.
        weights: (count,) weight of each point (quadrature weights or 1/count).
        batch_size: rows per forward/backward (at least one sample's worth of points).
        transform: T applied to each point's gradient before weighting (default identity).
    """
    first = points(0)
    batch = first.shape[0]
    per_chunk = max(1, batch_size // batch)  # points per chunk
    total = torch.zeros_like(first)
    with hook_session(model) as session, torch.enable_grad():
        for start in range(0, count, per_chunk):
            indices = range(start, min(count, start + per_chunk))
            chunk = torch.cat([points(s) for s in indices])  # (n*B, 3, H, W)
            logits = session.forward(chunk, input_grad=True)
            scores = logits.gather(1, targets.repeat(len(indices)).view(-1, 1))
            assert session.input is not None
            (gradient,) = session.gradients(scores, [session.input], retain_graph=False)
            if transform is not None:
                gradient = transform(gradient)
            for offset, s in enumerate(indices):
                total += weights[s] * gradient[offset * batch : (offset + 1) * batch]
    return total
