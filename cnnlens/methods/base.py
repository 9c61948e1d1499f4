"""Method registry, params models, the shared gradient pass and the tensor-level driver.

A method is one class registered with `@register`. Gradient methods declare what they need
(captured layers, gradients w.r.t. the input or a layer under a ReLU rule) and read it from
a `GradientPass`, which runs one forward and at most one backward per ReLU rule for every
method of one call. Perturbation and optimization methods run their own forwards.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import nn

from cnnlens.api.models import method_route
from cnnlens.errors import (
    IncompatibleModelError,
    InvalidParamsError,
    MethodNotFoundError,
    did_you_mean,
    shown,
    validation_problems,
)
from cnnlens.methods.workload import Cost, Workload
from cnnlens.models import heads
from cnnlens.models.hooks import HookSession, ReluRule
from cnnlens.models.layers import LayerInventory
from cnnlens.models.outputs import ModelOutput
from cnnlens.models.preprocess import Preprocessing
from cnnlens.targets import Target

INPUT = "input"  # the gradient target meaning "the model's input"


class MethodParams(BaseModel):
    """Base of every method's parameters: unknown fields are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Requirements:
    """What a gradient method reads from the shared pass."""

    layers: frozenset[str] = frozenset()
    gradients: frozenset[tuple[str, ReluRule]] = frozenset()  # (INPUT or layer, rule)

    @classmethod
    def input_gradient(cls, rule: ReluRule, layers: frozenset[str] = frozenset()) -> Requirements:
        """The input's gradient under `rule`, with `layers` captured."""
        return cls(layers=layers, gradients=frozenset({(INPUT, rule)}))


@dataclass
class MethodOutput:
    """A method's raw result: `map` in input space plus method-specific extras."""

    map: torch.Tensor  # (B, 1, H, W) or (B, 3, H, W), raw, not normalized
    extras: dict[str, Any] = field(default_factory=dict)


def join_outputs(parts: Sequence[MethodOutput]) -> MethodOutput:
    """Outputs of consecutive rows of one batch -> the batch's: maps and per-row extras
    (tensors whose first dim is the part's rows, lists of one item per row) are joined in
    order; anything else is shared and taken from the first part."""
    sizes = [part.map.shape[0] for part in parts]
    extras: dict[str, Any] = {}
    for key, first in parts[0].extras.items():
        values = [part.extras[key] for part in parts]
        if all(_per_row(value, size) for value, size in zip(values, sizes, strict=True)):
            if isinstance(first, torch.Tensor):
                extras[key] = torch.cat(values)
            else:
                extras[key] = [item for value in values for item in value]
        else:
            extras[key] = first
    return MethodOutput(torch.cat([part.map for part in parts]), extras)


def row_extras(extras: dict[str, Any], row: int | slice, batch: int) -> dict[str, Any]:
    """Per-sample rows (an index or a slice) of a batch's extras (tensors whose first dim is
    the batch, lists of one item per sample); everything else is shared."""
    return {key: value[row] if _per_row(value, batch) else value for key, value in extras.items()}


def _per_row(value: Any, rows: int) -> bool:
    if isinstance(value, torch.Tensor):
        return value.dim() > 0 and value.shape[0] == rows
    return isinstance(value, list) and len(value) == rows


@dataclass
class MethodContext:
    """Everything a method may use for one batch.

    What to explain is `target` (`cnnlens.targets`), resolved: `scores(x)` is the one way to
    get the (B,) scores it explains for an input, e.g. captum's `forward_func`:

        IntegratedGradients(context.scores).attribute(
            context.x, additional_forward_args=(context.target_rows,)
        )

    (captum expands `target_rows` with the inputs, so each expanded row keeps its target).
    """

    model: nn.Module
    x: torch.Tensor  # (B, 3, H, W) preprocessed, never modified
    target: Target  # resolved: the class, region or box each row explains
    layer: str  # resolved target layer
    preprocessing: Preprocessing  # normalization, for methods that work in pixel units
    inventory: LayerInventory  # layer shapes, default layer, compatibility report
    categories: Sequence[str] = ()  # class names by index (empty when unknown)
    gradient_pass: GradientPass | None = None

    @property
    def targets(self) -> torch.Tensor:
        """(B,) each row's class index (the target's `indices`)."""
        return self.target.indices

    @property
    def target_rows(self) -> torch.Tensor:
        """(B,) 0..B-1: the target row of each row of x (for batches that repeat rows)."""
        return torch.arange(self.x.shape[0], device=self.x.device)

    def scores(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) the target's score for each row of `x` (N, 3, H, W), differentiable; `rows`
        (N,): the target row of each (default: row n is row n, N = B)."""
        return self.target.score(self.model(x), rows)

    @property
    def shared(self) -> GradientPass:
        """The shared pass (gradient methods only)."""
        if self.gradient_pass is None:
            raise RuntimeError("this method needs the shared gradient pass")
        return self.gradient_pass


class Method(ABC):
    """One interpretation method. Subclasses set the class attributes and `compute`."""

    name: ClassVar[str]
    title: ClassVar[str]
    paper: ClassVar[str]
    Params: ClassVar[type[MethodParams]] = MethodParams
    # "gradient": reads a GradientPass; "standalone": runs its own forwards.
    kind: ClassVar[Literal["gradient", "standalone"]] = "gradient"
    # "class": explains a target class; "layer": looks at a layer; "image": makes an image.
    produces: ClassVar[Literal["map", "image", "activations", "weights"]] = "map"
    uses_layer: ClassVar[bool] = False
    uses_target: ClassVar[bool] = True
    # Whether the method looks at an uploaded image (weights and optimized images need none).
    uses_image: ClassVar[bool] = True
    # Whether it explains a segmentation target (a class's logits over a region) and a
    # detector's box, through the target's `score` / `loss`; False: it reads (B, K) logits.
    segmentation: ClassVar[bool] = True
    # The heads it explains at all (None: every head; see `check_head_support`).
    heads: ClassVar[frozenset[str] | None] = None

    def requirements(self, params: Any, layer: str) -> Requirements:
        return Requirements()

    def check_model(self, inventory: LayerInventory, layer: str) -> None:
        """Refuse (422) a model or layer this method cannot explain faithfully, before any
        work (an audit checks once, not per image); default: every model."""
        return None

    def cost(self, params: Any, workload: Workload) -> Cost:
        """Passes beyond the driver's one forward of the batch (see `cnnlens.methods.cost`).

        Default: a gradient method's one backward to the input through the shared forward;
        standalone methods declare their own passes.
        """
        if self.kind == "gradient":
            return Cost.of(backwards=workload.rows, peak_rows=workload.rows, gradient="input")
        return Cost()

    def cost_param_value(self, params: Any, name: str, workload: Workload) -> int:
        """The integer value of a cost-driving param (a method maps e.g. "all" to a count)."""
        return int(getattr(params, name))

    @abstractmethod
    def compute(self, context: MethodContext, params: Any) -> MethodOutput:
        """Return the raw result for the batch in `context`."""


METHODS: dict[str, Method] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method available to the API, CLI, client and web page."""
    METHODS[cls.name] = cls()
    return cls


def get_method(name: str) -> Method:
    _load_builtin_methods()
    try:
        return METHODS[name]
    except KeyError:
        known = ", ".join(sorted(METHODS))
        hint = did_you_mean(name, METHODS) or ";"
        raise MethodNotFoundError(f"unknown method {shown(name)}{hint} known: {known}") from None


def method_names() -> list[str]:
    _load_builtin_methods()
    return list(METHODS)


def unregister(name: str) -> None:
    """Forget a registered method (a plug-in's, or a test's)."""
    METHODS.pop(name, None)


# What GET /v1/methods calls each output (`kind`): the page picks a method's view by it.
VIEW_KINDS = {"map": "map", "image": "image", "activations": "activation", "weights": "weights"}


def own_route(name: str) -> str | None:
    """The REST path of a method with results of its own (None: a map, on /v1/explain)."""
    if get_method(name).produces == "map":
        return None
    return method_route(name)


def explains_head(method: Method, head: str) -> bool:
    """Whether `method` explains a model with this head (`check_head_support` refuses it)."""
    if method.heads is not None:
        return head in method.heads
    return method.segmentation or head not in (heads.SEGMENTATION, heads.DETECTION)


def check_head_support(method: Method, head: str) -> None:
    """Refuse (422) a method that reads (B, K) class logits on a segmentation model or a
    detector, and one made for other heads (D-RISE explains detectors only)."""
    if explains_head(method, head):
        return
    if method.heads is not None and head not in method.heads:
        raise IncompatibleModelError(
            f"{method.name} explains {' and '.join(sorted(method.heads))} models only; "
            f"this model's head is {head}"
        )
    kind = "segmentation models" if head == heads.SEGMENTATION else "detectors"
    raise IncompatibleModelError(
        f"{method.name} reads class logits (B, K) and does not explain {kind}; use saliency, "
        "grad_cam, guided_backprop, occlusion or integrated_gradients"
        + (" (or d_rise)" if head == heads.DETECTION else "")
    )


def parse_params(method: Method, params: BaseModel | dict[str, Any] | None) -> MethodParams:
    """Validate raw params into the method's pydantic model, as a clear 422 on failure."""
    if isinstance(params, method.Params):
        return params
    if isinstance(params, BaseModel):
        params = params.model_dump()
    try:
        return method.Params.model_validate(params or {})
    except ValidationError as error:
        problems = validation_problems(error, "params")
        raise InvalidParamsError(f"{method.name}: {problems}") from None


class GradientPass:
    """One forward and at most one backward per ReLU rule, shared by several methods."""

    def __init__(self, session: HookSession, requirements: Sequence[Requirements]) -> None:
        self.session = session
        self._wanted: dict[ReluRule, set[str]] = {}
        for requirement in requirements:
            for source, rule in requirement.gradients:
                self._wanted.setdefault(rule, set()).add(source)
        self._gradients: dict[tuple[str, ReluRule], torch.Tensor] = {}
        self.logits: ModelOutput | None = None  # or a detector's detections
        self.scores: torch.Tensor | None = None

    @property
    def needs_input_gradient(self) -> bool:
        return any(INPUT in sources for sources in self._wanted.values())

    def run_forward(self, x: torch.Tensor) -> ModelOutput:
        self.logits = self.session.forward(x, input_grad=self.needs_input_gradient)
        return self.logits

    def select(self, target: Target) -> None:
        """The scores to explain: the resolved target's, from this pass's logits."""
        assert self.logits is not None
        self.scores = target.score(self.logits)  # (B,)

    def activation(self, layer: str) -> torch.Tensor:
        return self.session.activations[layer]

    def gradient(self, source: str, rule: ReluRule) -> torch.Tensor:
        """d score / d source under rule; all sources of one rule come from one backward."""
        key = (source, rule)
        if key not in self._gradients:
            sources = sorted(self._wanted.get(rule, set()) | {source})
            parts = [self._tensors(name) for name in sources]  # a layer's levels: several
            assert self.scores is not None
            grads = self.session.gradients(
                self.scores, [tensor for part in parts for tensor in part], rule=rule
            )
            start = 0
            for name, part in zip(sources, parts, strict=True):
                own = grads[start : start + len(part)]
                start += len(part)
                self._gradients[(name, rule)] = (
                    own[0] if name == INPUT else self.session.layer_gradient(name, own)
                )
        return self._gradients[key]

    def input_gradient(self, rule: ReluRule) -> torch.Tensor:
        """(B, 3, H, W) d score / d input under `rule`."""
        return self.gradient(INPUT, rule)

    def _tensors(self, source: str) -> list[torch.Tensor]:
        if source == INPUT:
            assert self.session.input is not None
            return [self.session.input]
        return self.session.captured(source)


def _load_builtin_methods() -> None:
    import cnnlens.methods.catalog  # noqa: F401  (registers every built-in method)


MethodFunction = Callable[[MethodContext, Any], MethodOutput]
