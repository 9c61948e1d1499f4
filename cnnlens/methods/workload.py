"""What a method declares about its cost: passes through the model and what they keep.

Each method's `cost(params, workload)` returns a `Cost` counted in rows through the model at
the workload's input size, so the declaration needs no model and no timing;
`cnnlens.methods.cost` turns it into forward-equivalents and bytes for one device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

# What the heaviest forward keeps for a backward: nothing, the part after a layer, everything.
Gradient = Literal["none", "layer", "input"]


def cost_field(
    default: int,
    drives: Literal["time", "memory"],
    description: str | None = None,
    *,
    ge: int | None = 1,
    le: int | None = 1024,
) -> Any:
    """A param that drives the method's `cost`: the budget check names it as the fix to try
    (`cnnlens.methods.cost.cost_params`), time or memory first as the budget is exceeded."""
    extra: dict[str, Any] = {"drives_cost": drives}
    return Field(default, ge=ge, le=le, description=description, json_schema_extra=extra)


@dataclass(frozen=True)
class Workload:
    """The size of one run: rows (images x targets) of one preprocessed input shape."""

    rows: int
    input_shape: tuple[int, int, int]  # (C, H, W) of the preprocessed input
    layer_channels: int | None = None  # channels of the resolved layer, where a method needs it

    @property
    def pixels(self) -> int:
        return self.input_shape[1] * self.input_shape[2]

    @property
    def input_values(self) -> int:
        """Values of one input row (C x H x W)."""
        channels, height, width = self.input_shape
        return channels * height * width


@dataclass(frozen=True)
class Peak:
    """One forward's rows and what it keeps for a backward."""

    rows: int
    gradient: Gradient = "none"


@dataclass(frozen=True)
class Cost:
    """Passes of one method (or request), in rows through the whole model.

    `forwards` and `backwards` add up over chunks; memory follows the peaks, the most rows in
    one forward with what that forward keeps, plus `resident_values` floats held across
    chunks (accumulators, masks, outputs).
    """

    forwards: float = 0.0
    backwards: float = 0.0
    peaks: tuple[Peak, ...] = ()
    resident_values: int = 0

    @classmethod
    def of(
        cls,
        forwards: float = 0.0,
        backwards: float = 0.0,
        peak_rows: int = 0,
        gradient: Gradient = "none",
        resident_values: int = 0,
    ) -> Cost:
        peaks = (Peak(peak_rows, gradient),) if peak_rows else ()
        return cls(forwards, backwards, peaks, resident_values)

    def then(self, other: Cost) -> Cost:
        """This cost followed by `other`: work adds up; either one's peak may be the larger."""
        return Cost(
            forwards=self.forwards + other.forwards,
            backwards=self.backwards + other.backwards,
            peaks=self.peaks + other.peaks,
            resident_values=self.resident_values + other.resident_values,
        )


def chunked(rows_total: int, batch_size: int) -> int:
    """Rows in the largest chunk when `rows_total` rows go `batch_size` at a time."""
    return max(0, min(rows_total, batch_size))
