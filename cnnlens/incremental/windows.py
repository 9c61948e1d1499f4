"""Occluding windows on a grid: their top-left corners, and averaging their values per pixel."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Offsets 0, s, 2s, ... <= size - window, plus one flush with the far edge when the
    stride does not land there, so that every pixel is covered by at least one window."""
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


@dataclass(frozen=True)
class WindowGrid:
    """Windows of (window, window) pixels at every (row, col) of `row_starts` x `col_starts`."""

    height: int
    width: int
    window: int
    row_starts: tuple[int, ...]
    col_starts: tuple[int, ...]

    @classmethod
    def of(cls, height: int, width: int, window: int, stride: int) -> WindowGrid:
        rows = window_starts(height, window, stride)
        cols = window_starts(width, window, stride)
        return cls(height, width, window, tuple(rows), tuple(cols))

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.row_starts), len(self.col_starts))

    def __len__(self) -> int:
        return len(self.row_starts) * len(self.col_starts)

    def corners(self, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,) rows and (N,) cols of every window's top-left corner, row-major."""
        rows = torch.tensor(self.row_starts, device=device)
        cols = torch.tensor(self.col_starts, device=device)
        return rows.repeat_interleave(len(cols)), cols.repeat(len(rows))

    def average(self, values: torch.Tensor) -> torch.Tensor:
        """(B, N) one value per window -> (B, 1, H, W): each pixel's mean over its windows
        (0 where a stride longer than the window leaves pixels no window covers)."""
        batch = values.shape[0]
        total = values.new_zeros(batch, self.height, self.width)
        count = values.new_zeros(self.height, self.width)
        grid = values.view(batch, *self.shape)  # (B, rows, cols)
        size = self.window
        for i, row in enumerate(self.row_starts):
            for j, col in enumerate(self.col_starts):
                total[:, row : row + size, col : col + size] += grid[:, i, j, None, None]
                count[row : row + size, col : col + size] += 1
        return (total / count.clamp(min=1)).unsqueeze(1)
