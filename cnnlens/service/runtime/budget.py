"""Every request within its budget: what a request will run, checked before it is queued.

A resolved request describes its work as a plan (`MethodsPlan` for explain, the method
routes and audit batches; `ComparePlan` for comparisons), from its resolved methods and
layer. `ServiceState.admit` checks the plan against the model's `Budget` (measured at
start-up, see `model_budget`) before anything is queued, and
the estimate's forward-equivalents order the model's queue, lighter first. A plan over the
budget is a 422 `over_budget` naming the param to change and the value that fits; an explain
response too large to render is a 422 `response_too_large`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cnnlens.compare.options import CompareOptions
from cnnlens.errors import OverBudgetError
from cnnlens.methods.cost import (
    Budget,
    Calibration,
    Estimate,
    check_methods_budget,
    estimate_request,
    layer_channels,
)
from cnnlens.methods.run import RunPlan
from cnnlens.models.loaded import LoadedModel
from cnnlens.response_size import check_response_size
from cnnlens.service.settings import Limits

# Methods whose maps have the input's 3 colour channels (their arrays are 3x larger).
_RGB_MAPS = frozenset({"guided_backprop", "deconvnet", "guided_grad_cam"})


def model_budget(calibration: Calibration, limits: Limits) -> Budget:
    """The budget of one request on a calibrated model, from `[limits]`."""
    return Budget.derive(
        calibration,
        limits.request_deadline_s,
        deadline_share=limits.budget_deadline_share,
        forward_equivalents=limits.budget_forward_passes,
        memory_bytes=limits.budget_memory_bytes,
    )


class Plan(Protocol):
    """A request's work, known before it runs."""

    def admit(self, model: LoadedModel, budget: Budget, limits: Limits) -> Estimate:
        """The estimate, or OverBudgetError / ResponseTooLargeError (422) when it cannot fit."""


@dataclass(frozen=True)
class Rendered:
    """What an explain response renders: maps at the upload's size, per explanation."""

    width: int
    height: int
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class MethodsPlan:
    """A resolved run (`RunPlan`: methods, params, layer) on `images` inputs, `targets` rows
    each (one `run_plan`).

    `images_param` names the request field that sets `images` (an audit's batch_size), so
    a refusal can say how many fit. `per_image_forwards`: work per image on top of the
    methods', in forward-equivalents at the calibrated size (an audit's feature space).
    """

    run: RunPlan
    targets: int = 1
    images: int = 1
    rendered: Rendered | None = None
    images_param: str | None = None
    per_image_forwards: float = 0.0

    def admit(self, model: LoadedModel, budget: Budget, limits: Limits) -> Estimate:
        if self.rendered is not None:
            rendered = self.rendered
            check_response_size(
                rendered.width,
                rendered.height,
                self.targets,
                len(self.run.methods),
                rendered.outputs,
                max_bytes=limits.max_response_bytes,
                max_rendered_pixels=limits.max_rendered_pixels,
                array_channels=3 if _RGB_MAPS.intersection(self.run.names) else 1,
            )
        shape = _input_shape(model)
        channels = layer_channels(model, self.run.layer)
        try:
            check_methods_budget(
                self.run.methods,
                self.targets,
                shape,
                budget,
                layer_channels=channels,
                images=self.images,
            )
        except OverBudgetError as error:
            if (
                self.images_param is None
                or self.images == 1
                or error.param not in (None, "targets")
            ):
                raise
            fitting = _largest(self.images, lambda n: self._fits(model, budget, n))
            if fitting is None:
                raise
            raise OverBudgetError(
                f"{error.method}: {_problem(error.message)}; lower {self.images_param} "
                f"to at most {fitting}",
                method=error.method,
                param=self.images_param,
                limit=fitting,
            ) from None
        found = self._estimate(model, budget.calibration, self.images)
        if not found.fits(budget):  # the methods fit; the work on top of them does not
            fitting = _largest(self.images, lambda n: self._fits(model, budget, n))
            advice = (
                f"lower {self.images_param} to at most {fitting}"
                if fitting is not None and self.images_param
                else "turn the feature space off"
            )
            raise OverBudgetError(
                f"audit: {self.images} images with the feature space would cost about "
                f"{found.forward_equivalents:.0f} forward passes, over the budget of "
                f"{budget.forward_equivalents:.0f}; {advice}",
                method="audit",
                param=self.images_param if fitting is not None else "features",
                limit=fitting,
            )
        return found

    def _estimate(self, model: LoadedModel, calibration: Calibration, images: int) -> Estimate:
        found = estimate_request(
            self.run.methods,
            self.targets,
            _input_shape(model),
            calibration,
            layer_channels=layer_channels(model, self.run.layer),
            images=images,
        )
        if not self.per_image_forwards:
            return found
        height, width = model.input_size
        extra = images * self.per_image_forwards * height * width / calibration.pixels
        return Estimate(
            found.forward_equivalents + extra,
            found.peak_bytes,
            found.seconds + extra * calibration.forward_s,
        )

    def _fits(self, model: LoadedModel, budget: Budget, images: int) -> bool:
        return self._estimate(model, budget.calibration, images).fits(budget)


@dataclass(frozen=True)
class ComparePlan:
    """A comparison: per image, the methods' maps, `curves` perturbation curves of
    `steps` + 1 forwards each (`batch_size` at a time), the methods again on each of
    `stages` randomized copies, and the other scores asked for: infidelity's
    `infidelity_maps` x (`samples` + 1) forwards, sensitivity_max's `samples` perturbed
    inputs through each method, and ROAD's imputations and forwards for `road_maps` maps."""

    run: RunPlan
    images: int
    curves: int  # curves per image: scored maps x (deletion, insertion)
    steps: int
    batch_size: int
    stages: int  # 0 without the randomization score
    samples: int = 0  # n_perturb_samples, when infidelity or sensitivity_max is asked for
    infidelity_maps: int = 0  # scored maps (random included) when infidelity is asked for
    sensitivity: bool = False
    road_maps: int = 0  # scored maps when road is asked for
    road_percentiles: tuple[int, ...] = ()

    def admit(self, model: LoadedModel, budget: Budget, limits: Limits) -> Estimate:
        maps = MethodsPlan(self.run)
        if not maps._fits(model, budget, 1):  # the maps alone: name the method's own param
            maps.admit(model, budget, limits)
        found = self._estimate(model, budget.calibration, self.images, self.steps, self.stages)
        if found.fits(budget):
            return found
        knobs: list[tuple[str, int, Callable[[int], bool]]] = [
            ("image", self.images, lambda n: self._fits(model, budget, n)),
            ("steps", self.steps, lambda n: self._fits(model, budget, steps=n)),
            ("stages", self.stages, lambda n: self._fits(model, budget, stages=n)),
            ("n_perturb_samples", self.samples, lambda n: self._fits(model, budget, samples=n)),
        ]
        problem = (
            f"would cost about {found.forward_equivalents:.0f} forward passes "
            f"(~{found.seconds:.1f} s here), over the budget of {budget.forward_equivalents:.0f}"
        )
        for name, current, fits in knobs:
            fitting = _largest(current, fits, lowest=2 if name == "steps" else 1)
            if fitting is not None:
                fields = "image fields" if name == "image" else name
                raise OverBudgetError(
                    f"compare: {problem}; lower {fields} to at most {fitting}",
                    method="compare",
                    param=name,
                    limit=fitting,
                )
        raise OverBudgetError(
            f"compare: {problem}, even for one image; ask for fewer scores or methods",
            method="compare",
        )

    def _estimate(
        self,
        model: LoadedModel,
        calibration: Calibration,
        images: int,
        steps: int,
        stages: int,
        samples: int | None = None,
    ) -> Estimate:
        samples = self.samples if samples is None else samples
        maps = MethodsPlan(self.run)._estimate(model, calibration, 1)
        curve_forwards = self.curves * (steps + 1)
        per_image = maps.forward_equivalents * (1 + stages) + curve_forwards
        per_image += self.infidelity_maps * (samples + 1)
        if self.sensitivity:  # each method alone on the perturbed inputs
            per_image += sum(
                MethodsPlan(RunPlan((method,), self.run.layer))
                ._estimate(model, calibration, samples)
                .forward_equivalents
                for method in self.run.methods
            )
        per_image += self.road_maps * _road_forward_equivalents(self.road_percentiles, calibration)
        curve_peak = min(self.batch_size, steps + 1) * calibration.inference_bytes_per_row
        peak = max(maps.peak_bytes, int(curve_peak))
        work = per_image * images
        return Estimate(work, peak, work * calibration.forward_s)

    def _fits(
        self,
        model: LoadedModel,
        budget: Budget,
        images: int = 1,
        steps: int | None = None,
        stages: int | None = None,
        samples: int | None = None,
    ) -> bool:
        """Whether the plan fits with one setting changed (the others as asked, one image)."""
        found = self._estimate(
            model,
            budget.calibration,
            images,
            self.steps if steps is None else steps,
            self.stages if stages is None else stages,
            samples,
        )
        return found.fits(budget)


# pytorch-grad-cam's noisy linear imputation solves one sparse system per ROAD image, its
# unknowns the removed pixels, whatever the model: 46-74 us a removed pixel on one thread of
# a shared 2-core machine under a load of 11-15 (benchmarks/compare_scores.py), several times
# its idle speed; charged at 15 us and converted by the model's calibrated forward time.
IMPUTE_SECONDS_PER_PIXEL = 15e-6


def _road_forward_equivalents(percentiles: Sequence[int], calibration: Calibration) -> float:
    """One map's ROAD: at each percentile p a MoRF and a LeRF image, each imputing
    (100 - p)% of the pixels, then scored by one forward each."""
    removed = sum(2 * (100 - p) / 100 for p in percentiles) * calibration.pixels
    return 2 * len(percentiles) + removed * IMPUTE_SECONDS_PER_PIXEL / calibration.forward_s


def _input_shape(model: LoadedModel) -> tuple[int, int, int]:
    return (3, *model.input_size)


def _largest(current: int, fits: Callable[[int], bool], lowest: int = 1) -> int | None:
    """The largest value below `current` (and at least `lowest`) for which `fits` holds;
    cost grows with the value."""
    if current <= lowest or not fits(lowest):
        return None
    low, high = lowest, current - 1
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def _problem(message: str) -> str:
    """The 'what it would cost' part of a budget message (between the method and the advice)."""
    text = message.partition(": ")[2] or message
    return text.split("; ")[0].removesuffix(", even with one target").split(", even with")[0]


def compare_plan(run: RunPlan, images: int, options: CompareOptions) -> ComparePlan:
    """The plan of POST /v1/compare from its resolved methods and layer, and the options."""
    scored = len(run.methods) + int(options.random_baseline)
    wanted = set(options.scores)
    kinds = len(wanted & {"deletion", "insertion"})
    perturbed = bool(wanted & {"infidelity", "sensitivity_max"})
    return ComparePlan(
        run=run,
        images=images,
        curves=scored * kinds,
        steps=options.steps,
        batch_size=options.batch_size,
        stages=options.stages if "randomization" in wanted else 0,
        samples=options.n_perturb_samples if perturbed else 0,
        infidelity_maps=scored if "infidelity" in wanted else 0,
        sensitivity="sensitivity_max" in wanted,
        road_maps=scored if "road" in wanted else 0,
        road_percentiles=tuple(options.road_percentiles),
    )


# The feature space's share of an audit batch, per image, in forward-equivalents: its taps
# and the perceptual hash of the thumbnail (benchmarks/features.py measures them), and its end
# (index, neighbours, map, clusters) spread over the images.
FEATURES_FORWARD_SHARE = 0.1


def audit_plan(run: RunPlan, batch_size: int, features: bool = False) -> MethodsPlan:
    """One batch of an audit: its methods (default params) on `batch_size` images, top-1,
    and the feature space's share when `features`."""
    return MethodsPlan(
        run,
        images=batch_size,
        images_param="batch_size",
        per_image_forwards=FEATURES_FORWARD_SHARE if features else 0.0,
    )
