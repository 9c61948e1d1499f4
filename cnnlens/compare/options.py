"""What a comparison computes: the scores, their settings and how the grid is drawn."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cnnlens.errors import InvalidParamsError, validation_problems

Score = Literal[
    "deletion",
    "insertion",
    "randomization",
    "infidelity",
    "sensitivity_max",
    "road",
    "sparseness",
    "complexity",
]
SCORES: tuple[Score, ...] = get_args(Score)  # every score compare computes, in table order
# The default on every front (Python, CLI, REST, page): answers in seconds on a CPU. The
# randomization check re-runs every method on `stages` randomized copies: asked for by name.
DEFAULT_SCORES: tuple[Score, ...] = ("deletion", "insertion")
Baseline = Literal["rise", "mean", "blur"]
BASELINES: tuple[Baseline, ...] = get_args(Baseline)
ROAD_PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)


class CompareOptions(BaseModel):
    """Settings of `compare` (API, REST form fields and CLI flags share these names)."""

    model_config = ConfigDict(extra="forbid")

    scores: list[Score] = Field(
        default_factory=lambda: list(DEFAULT_SCORES),
        description="scores to compute for each map, any of " + ", ".join(SCORES)
        + " (default: deletion and insertion; randomization, which re-runs every method on"
        " `stages` randomized copies of the model, on request; empty: agreement only)",
    )  # fmt: skip
    steps: int = Field(
        default=16,
        ge=2,
        le=512,
        description="steps of each deletion / insertion curve (steps + 1 points); 224 at "
        "224x224 is the RISE authors' schedule of 224 pixels a step",
    )
    baseline: Baseline = Field(
        default="rise",
        description="what perturbed pixels become: rise (the RISE authors' protocol: deletion "
        "to zeros in normalized space, insertion from an 11x11 sigma=5 blur with zero "
        "padding), mean (zeros both ways), or blur (a Gaussian blur of blur_sigma with "
        "reflected borders both ways)",
    )
    blur_sigma: float = Field(
        default=5.0, gt=0, le=64, description="baseline blur: Gaussian sigma in pixels (+-3 sigma)"
    )
    batch_size: int = Field(default=16, ge=1, le=512, description="perturbed images per forward")
    top_k: float = Field(default=0.1, gt=0, le=1, description="share of pixels for top-k IoU")
    stages: int = Field(
        default=3, ge=1, le=64, description="parameter blocks randomized, top of the network down"
    )
    seed: int = Field(
        default=0,
        ge=0,
        le=2**31 - 1,
        description="seeds randomization, tie-breaks, perturbations, ROAD's noise and random",
    )
    n_perturb_samples: int = Field(
        default=10, ge=1, le=100, description="infidelity / sensitivity_max: perturbed inputs"
    )
    perturb_radius: float = Field(
        default=0.02,
        gt=0,
        le=10,
        description="sensitivity_max: perturbations uniform in [-r, r] per input value "
        "(normalized space)",
    )
    infidelity_noise: float = Field(
        default=0.003,
        gt=0,
        le=10,
        description="infidelity: standard deviation of the Gaussian perturbation I "
        "(normalized space)",
    )
    road_percentiles: list[int] = Field(
        default_factory=lambda: list(ROAD_PERCENTILES),
        min_length=1,
        max_length=9,
        description="road: percentiles of the map at which pixels are imputed (10..90)",
    )
    ssim: bool = Field(default=False, description="also report SSIM under model randomization")
    shared_scale: bool = Field(
        default=False, description="one colour scale for every map of the grid"
    )
    random_baseline: bool = Field(
        default=False,
        description="also score a seeded random map (7x7 noise, upsampled) as a reference",
    )

    @field_validator("road_percentiles")
    @classmethod
    def _percentiles(cls, values: list[int]) -> list[int]:
        if any(not 0 < value < 100 for value in values):
            raise ValueError("percentiles lie strictly between 0 and 100")
        if len(set(values)) != len(values):
            raise ValueError("percentiles must be distinct")
        return values


def parse_options(values: dict[str, Any] | None = None, **overrides: Any) -> CompareOptions:
    """Validated options; bad values are an InvalidParamsError (422), not a crash."""
    merged = {**(values or {}), **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return CompareOptions.model_validate(merged)
    except ValidationError as error:
        problems = validation_problems(error, "options")
        raise InvalidParamsError(f"invalid compare options: {problems}") from None


# The summary's score names: the `scores` names, plus randomization's optional SSIM.
SSIM_SCORE = "randomization_ssim"
LOWER_IS_BETTER = frozenset(
    {"deletion", "randomization", SSIM_SCORE, "infidelity", "sensitivity_max", "complexity"}
)
# Former names, still sent beside the new ones in JSON for one release.
ALIASES = {
    "deletion_auc": "deletion",
    "insertion_auc": "insertion",
    "randomization_similarity": "randomization",
}


def score_names(options: CompareOptions) -> list[str]:
    """The scores a comparison reports, in table order."""
    names: list[str] = []
    for name in SCORES:
        if name in options.scores:
            names.append(name)
            if name == "randomization" and options.ssim:
                names.append(SSIM_SCORE)
    return names


def with_aliases(scores: dict[str, Any]) -> dict[str, Any]:
    """scores plus each former name beside its new one (JSON answers, for one release)."""
    return {**scores, **{old: scores[new] for old, new in ALIASES.items() if new in scores}}
