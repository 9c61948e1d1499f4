"""What a comparison computes: the scores, their settings and how the grid is drawn."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cnnlens.errors import InvalidParamsError, validation_problems

Score = Literal["deletion", "insertion", "randomization"]
SCORES: tuple[Score, ...] = ("deletion", "insertion", "randomization")
# The default on every front (Python, CLI, REST, page): answers in seconds on a CPU. The model
# randomization check re-runs every method on `stages` randomized copies: asked for by name.
DEFAULT_SCORES: tuple[Score, ...] = ("deletion", "insertion")


class CompareOptions(BaseModel):
    """Settings of `compare` (API, REST form fields and CLI flags share these names)."""

    model_config = ConfigDict(extra="forbid")

    scores: list[Score] = Field(
        default_factory=lambda: list(DEFAULT_SCORES),
        description="faithfulness scores to compute for each map (empty: agreement only); "
        "default deletion and insertion, randomization on request (it re-runs every method "
        "on `stages` randomized copies of the model)",
    )
    steps: int = Field(default=16, ge=2, le=512, description="points of each perturbation curve")
    baseline: Literal["rise", "mean", "blur"] = Field(
        default="rise",
        description="what perturbed pixels become: the mean colour, a blurred copy, or "
        "rise (deletion to the mean, insertion from the blur, as in Petsiuk et al.)",
    )
    blur_sigma: float = Field(default=5.0, gt=0, le=64, description="Gaussian blur, pixels")
    batch_size: int = Field(default=16, ge=1, le=512, description="perturbed images per forward")
    top_k: float = Field(default=0.1, gt=0, le=1, description="share of pixels for top-k IoU")
    stages: int = Field(
        default=3, ge=1, le=64, description="parameter blocks randomized, top of the network down"
    )
    seed: int = Field(
        default=0, ge=0, le=2**31 - 1, description="seeds randomization, tie-breaks and random"
    )
    ssim: bool = Field(default=False, description="also report SSIM under model randomization")
    shared_scale: bool = Field(
        default=False, description="one colour scale for every map of the grid"
    )
    random_baseline: bool = Field(
        default=False,
        description="also score a seeded random map (7x7 noise, upsampled) as a reference",
    )


def parse_options(values: dict[str, Any] | None = None, **overrides: Any) -> CompareOptions:
    """Validated options; bad values are an InvalidParamsError (422), not a crash."""
    merged = {**(values or {}), **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return CompareOptions.model_validate(merged)
    except ValidationError as error:
        problems = validation_problems(error, "options")
        raise InvalidParamsError(f"invalid compare options: {problems}") from None
