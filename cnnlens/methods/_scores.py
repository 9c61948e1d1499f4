"""The model Captum attributes: the resolved target's score of each row, as a module.

Captum evaluates the model on rows that are not the batch's own (inputs and baselines side by
side, noisy copies, perturbations): each row carries the index of the sample it belongs to
(`MethodContext.target_rows`, passed as `additional_forward_args`), and the target scores it
as that sample's row (`Target.score(output, rows)`).
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlens.methods.base import MethodContext
from cnnlens.targets import Target


class ScoredModel(nn.Module):
    """forward(x, rows) = target.score(model(x), rows), (N,): what Captum attributes.

    An `nn.Module` (DeepLIFT hooks the modules it is given) around `MethodContext.scores`;
    `rows` goes to Captum as an additional forward argument, which it expands exactly as it
    expands the inputs (repeated for baselines, interleaved for samples, per perturbation).
    """

    def __init__(self, context: MethodContext) -> None:
        super().__init__()
        # Set in the slot, not by setattr: a registration would invalidate every kept walk
        # of the module tree (`cnnlens.models.module_tree`), and nothing here is new to it.
        self._modules["model"] = context.model
        self.target: Target = context.target

    def forward(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return self.target.score(self._modules["model"](x), rows)  # type: ignore[misc]
