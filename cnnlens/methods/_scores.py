"""The one place where the library-backed methods turn model outputs into the scores they explain.

Captum, Zennit and the ablation methods evaluate the model on rows that are not the batch's own
(inputs and baselines side by side, noisy copies, perturbations, ablations): each row carries
the index of the sample it belongs to, and `score_function` picks that sample's target.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from cnnlens.methods.base import MethodContext
from cnnlens.models import heads

# (model output (N, K) or (N, K, H, W), rows (N,) the batch sample of each output row) -> (N,)
ScoreFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def score_function(context: MethodContext) -> ScoreFunction:
    """The score each row explains: its sample's target logit (see `heads.target_scores`)."""
    head, targets, region = context.head, context.targets, context.region

    def score(output: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        row_region = None if region is None else region[rows]
        return heads.target_scores(head, output, targets[rows], row_region)

    return score


def sample_rows(context: MethodContext) -> torch.Tensor:
    """(B,) each sample's own index: the rows argument of a batch evaluated as it is."""
    return torch.arange(context.x.shape[0], device=context.x.device)


class ScoredModel(nn.Module):
    """forward(x, rows) = score(model(x), rows), (N,): what Captum attributes.

    `rows` goes to Captum as an additional forward argument, which it expands exactly as it
    expands the inputs (repeated for baselines, interleaved for samples, per perturbation).
    """

    def __init__(self, context: MethodContext) -> None:
        super().__init__()
        # Set in the slot, not by setattr: a registration would invalidate every kept walk
        # of the module tree (`cnnlens.models.module_tree`), and nothing here is new to it.
        self._modules["model"] = context.model
        self.score = score_function(context)

    def forward(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return self.score(self._modules["model"](x), rows)  # type: ignore[misc]
