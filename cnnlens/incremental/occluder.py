"""The target's loss (`Target.loss`: -log P(target) for a class) of window-occluded copies of
an image, `batch_size` copies at a time, by dense forwards or by exact incremental inference."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from cnnlens.errors import IncompatibleModelError
from cnnlens.incremental.engine import IncrementalOcclusion, Unsupported
from cnnlens.incremental.windows import WindowGrid
from cnnlens.targets import Target

Engine = Literal["auto", "dense", "incremental"]
# "auto" keeps the incremental engine only if its planned work is clearly below dense work.
AUTO_MAX_COST_FRACTION = 0.9


class Occluder:
    """Scores occluded copies of images of one size for one model and window grid.

    Peak memory grows with `batch_size` (the copies in flight), never with the number of
    windows: each batch is scored and dropped before the next one is built.
    """

    def __init__(
        self,
        model: nn.Module,
        grid: WindowGrid,
        batch_size: int,
        engine: Engine,
        example: torch.Tensor,
        threshold: float = 0.0,
    ) -> None:
        """example: (1, C, H, W), an input of the size to plan for (and, with a projective-
        field `threshold` > 0, the image its effect profile is measured on)."""
        self.model = model
        self.grid = grid
        self.batch_size = batch_size
        self.incremental: IncrementalOcclusion | None = None
        self.note: str | None = None  # why the dense engine runs when it was not asked for
        if engine != "dense":
            rows, cols = grid.corners(example.device)
            size = (grid.window, grid.window)
            try:
                prepared = IncrementalOcclusion.prepare(
                    model, example, rows, cols, size, threshold=threshold
                )
            except Unsupported as error:
                if engine == "incremental":
                    raise IncompatibleModelError(
                        f"occlusion: this model cannot run incrementally ({error}); "
                        'use engine "dense" or "auto"'
                    ) from None
                self.note = str(error)
            else:
                fraction = prepared.plan.cost_fraction
                if engine == "incremental" or fraction < AUTO_MAX_COST_FRACTION:
                    self.incremental = prepared
                else:
                    self.note = f"incremental work would be {fraction:.0%} of dense work"

    @property
    def engine(self) -> Literal["dense", "incremental"]:
        return "dense" if self.incremental is None else "incremental"

    @property
    def planned_work(self) -> float:
        """Estimated work per window of the engine used, as a fraction of a dense forward."""
        return 1.0 if self.incremental is None else self.incremental.plan.cost_fraction

    def losses(
        self,
        x: torch.Tensor,
        target: Target,
        patch: torch.Tensor,
        windows: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (1, 3, H, W), its resolved one-row target, patch (3, w, w) -> clean loss () and
        occluded losses (N,), or (M,) at the `windows` (M,) indices of the grid, row-major,
        when given."""
        with torch.inference_mode():
            if self.incremental is not None:
                return self._incremental_losses(self.incremental, x, target, patch, windows)
            return self._dense_losses(x, target, patch, windows)

    def _incremental_losses(
        self,
        engine: IncrementalOcclusion,
        x: torch.Tensor,
        target: Target,
        patch: torch.Tensor,
        windows: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        clean = self._loss(engine.set_image(x), target)[0]
        count = len(self.grid) if windows is None else int(windows.shape[0])
        losses = [clean.new_zeros(0)]
        for start in range(0, count, self.batch_size):
            stop = min(start + self.batch_size, count)
            patches = patch.expand(stop - start, -1, -1, -1)  # (P, 3, w, w)
            select = slice(start, stop) if windows is None else windows[start:stop]
            losses.append(self._loss(engine.logits_at(select, patches), target))
        return clean, torch.cat(losses)

    def _dense_losses(
        self, x: torch.Tensor, target: Target, patch: torch.Tensor, windows: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        clean = self._loss(self.model(x), target)[0]
        corners = [(r, c) for r in self.grid.row_starts for c in self.grid.col_starts]
        if windows is not None:
            corners = [corners[i] for i in windows.tolist()]
        if not corners:
            return clean, clean.new_zeros(0)
        size = self.grid.window
        rows = min(self.batch_size, len(corners))
        buffer = x.new_empty((rows, *x.shape[1:]))
        losses = []
        for start in range(0, len(corners), self.batch_size):
            chunk = corners[start : start + self.batch_size]
            copies = buffer[: len(chunk)]  # (P, 3, H, W), reused across batches
            copies.copy_(x.expand(len(chunk), -1, -1, -1))
            for copy, (row, col) in zip(copies, chunk, strict=True):
                copy[:, row : row + size, col : col + size] = patch
            losses.append(self._loss(self.model(copies), target))
        return clean, torch.cat(losses)

    @staticmethod
    def _loss(logits: torch.Tensor, target: Target) -> torch.Tensor:
        """(P, K) logits of copies of one image -> (P,) its target's loss."""
        return target.loss(logits, torch.zeros(logits.shape[0], dtype=torch.long))
