"""Captum called inside cnnlens's hook session: one base for the methods it computes.

Captum registers hooks and sets attributes on the model's modules (DeepLIFT) and draws from
torch's and NumPy's global generators (SHAP, LIME): `CaptumMethod` runs every call inside
`library_hooks` (the model's lock, eval mode, frozen parameters, and whatever Captum leaves
behind undone) and, for the stochastic ones, `seeded`.
"""

from __future__ import annotations

import threading
import warnings
from abc import abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cnnlens.methods._scores import ScoredModel
from cnnlens.methods.base import Method, MethodContext, MethodOutput
from cnnlens.methods.workload import Cost, Workload
from cnnlens.models.hooks import library_hooks

# Captum warns on every DeepLIFT call that it sets hooks: `library_hooks` takes care of them.
warnings.filterwarnings("ignore", message="Setting forward, backward hooks", category=UserWarning)

_GLOBAL_GENERATORS = threading.Lock()


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """torch's and NumPy's global generators seeded inside the block and restored after it;
    one seeded block at a time in the process, so that no other one draws in between."""
    with _GLOBAL_GENERATORS, torch.random.fork_rng():
        torch.manual_seed(seed)
        state = np.random.get_state()
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


@contextmanager
def captum_model(context: MethodContext) -> Iterator[ScoredModel]:
    """The scored model, inside the session every Captum call runs in (`library_hooks`)."""
    with library_hooks(context.model):
        yield ScoredModel(context)


@dataclass(frozen=True)
class CaptumCall:
    """What a Captum attribution runs on: the scored model, a copy of the batch that requires
    gradients, each row's sample (Captum's `additional_forward_args`) and the context."""

    model: ScoredModel
    x: torch.Tensor  # (B, C, H, W)
    rows: torch.Tensor  # (B,)
    context: MethodContext


class CaptumMethod(Method):
    """A map computed by one Captum gradient attribution on the scored model
    (`_scores.ScoredModel`), of a copy of the input that requires gradients."""

    kind = "standalone"

    def rows_per_image(self, params: Any) -> int:
        """Rows Captum runs through the model per image, in one forward and one backward."""
        return 1

    def cost(self, params: Any, workload: Workload) -> Cost:
        rows = self.rows_per_image(params) * workload.rows
        return Cost.of(forwards=rows, backwards=rows, peak_rows=rows, gradient="input")

    def compute(self, context: MethodContext, params: Any) -> MethodOutput:
        x = context.x.detach().requires_grad_(True)
        with captum_model(context) as model:
            attributions = self.attribute(
                CaptumCall(model, x, context.target_rows, context), params
            )
        return MethodOutput(attributions.detach())

    @abstractmethod
    def attribute(self, call: CaptumCall, params: Any) -> torch.Tensor:
        """Captum's attribution of `call.model(x, rows)` (rows: `additional_forward_args`)."""
