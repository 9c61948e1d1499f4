"""The one hook manager: every hook in cnnlens is registered here, inside a context manager.

A `HookSession` runs one forward pass that captures the activations of chosen layers and,
when asked, routes every ReLU through a rule that is picked at *backward* time:

- ``gradient``: the true derivative, mask(x > 0) * g            (saliency, Grad-CAM)
- ``guided``:   mask(x > 0) * max(g, 0)                          (Springenberg et al. 2014)
- ``deconv``:   max(g, 0), ignoring the forward mask             (Zeiler & Fergus 2014)

so one forward serves saliency, Grad-CAM, guided backprop and deconvnet. Gradients are taken
with `torch.autograd.grad` on captured tensors (never module full-backward hooks, which break
on in-place ReLU), so parameters' `.grad` is never touched and the backward stops at the
requested tensors. Functional and in-place ReLUs are covered by a thread-local
TorchFunctionMode, so concurrent sessions on other threads never see each other's rules.

The other hooks of the project live here too, under the same lock (`model_lock`) and the same
restore guarantees: `observe_modules` (forward hooks on every named module, for the layer
inventory), `substitute_output` (a layer's output replaced, for ablations),
`intercept_torch_functions` (the one torch-function mode: the ReLU rules and the other
interceptors plug into it) and `library_hooks`, the session in which Captum and Zennit
register hooks of their own: whatever they leave on the tree, on success or error, is undone.
"""

from __future__ import annotations

import itertools
import operator
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as torch_module
from torch.overrides import TorchFunctionMode

from cnnlens.errors import IncompatibleModelError, LayerNotFoundError, unknown_layer
from cnnlens.models.levels import is_levels, stack_levels
from cnnlens.models.module_tree import module_tree
from cnnlens.models.outputs import is_detections


class ReluRule(StrEnum):
    GRADIENT = "gradient"
    GUIDED = "guided"
    DECONV = "deconv"


# Activations that play ReLU's role but have no guided/deconv rule: refuse rather than lie.
UNSUPPORTED_ACTIVATION_NAMES = (
    "silu", "swish", "gelu", "mish", "hardswish", "elu", "selu", "celu",
    "leakyrelu", "prelu", "softplus", "glu",
)  # fmt: skip
_UNSUPPORTED_FUNCTIONS = {
    F.silu, F.gelu, F.mish, F.hardswish, F.elu, F.selu, F.celu, F.leaky_relu, F.softplus,
}  # fmt: skip


_training = operator.attrgetter("training")


class _Registrations:
    """Counts submodule and parameter registrations in this process (torch's global
    registration hooks, installed on first use): module_tree's walks are stamped with it."""

    def __init__(self) -> None:
        self._counter = itertools.count()
        self.generation = next(self._counter)
        self.installed = False
        self._lock = threading.Lock()

    def install(self) -> None:
        with self._lock:
            if not self.installed:
                torch_module.register_module_module_registration_hook(self._registered)
                torch_module.register_module_parameter_registration_hook(self._registered)
                self.installed = True

    def _registered(self, module: nn.Module, name: str, value: Any) -> None:
        self.generation = next(self._counter)  # returns None: the registration is unchanged


_REGISTRATIONS = _Registrations()


def registrations() -> int:
    """How many submodules and parameters were registered since counting began."""
    if not _REGISTRATIONS.installed:
        _REGISTRATIONS.install()
    return _REGISTRATIONS.generation


_MODEL_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The lock that serializes hook sessions on one module tree."""
    with _LOCKS_GUARD:
        lock = _MODEL_LOCKS.get(model)
        if lock is None:
            lock = _MODEL_LOCKS[model] = threading.RLock()
        return lock


class _RuleState:
    """Mutable per-session switch read by every rule-ReLU during backward."""

    def __init__(self) -> None:
        self.rule = ReluRule.GRADIENT


class _RuleReLU(torch.autograd.Function):
    """clamp(x, 0, upper) whose backward follows the session's current ReLU rule."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, upper: float | None, state: _RuleState) -> torch.Tensor:
        # The pre-activation is kept (autograd's version check refuses it if later modified);
        # the masks are taken in backward by single fused kernels, far cheaper than bool masks.
        ctx.save_for_backward(x)
        ctx.upper = upper
        ctx.state = state
        return x.clamp(min=0) if upper is None else x.clamp(0, upper)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        rule = ctx.state.rule
        if rule is ReluRule.DECONV:
            return grad.clamp(min=0), None, None
        if rule is ReluRule.GUIDED:
            grad = grad.clamp(min=0)
        # grad where the unit passes (0 < x, and x < upper for ReLU6-like caps), else 0.
        if ctx.upper is None:
            return torch.ops.aten.threshold_backward(grad, x, 0.0), None, None
        return torch.ops.aten.hardtanh_backward(grad, x, 0.0, ctx.upper), None, None


class _ReluRules:
    """Routes relu / relu6 / hardtanh(0, u), functional or in-place, through `_RuleReLU`
    (a `FunctionInterceptor`, installed by `intercept_torch_functions` for each forward)."""

    def __init__(self, state: _RuleState) -> None:
        self.state = state
        self.unsupported: set[str] = set()
        self.relu_calls = 0

    def __call__(
        self, func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]
    ) -> Any:
        upper = _relu_upper_bound(func, args, kwargs)
        if upper is not False and isinstance(args[0], torch.Tensor) and args[0].is_floating_point():
            self.relu_calls += 1
            # Out of place even for in-place calls: the pre-activation stays intact for backward.
            return _RuleReLU.apply(args[0], upper, self.state)
        if func in _UNSUPPORTED_FUNCTIONS:
            self.unsupported.add(getattr(func, "__name__", str(func)))
        return func(*args, **kwargs)


_RELU_FUNCTIONS = {
    F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_,
}  # fmt: skip
_HARDTANH_FUNCTIONS = {F.hardtanh, F.hardtanh_, F.relu6}


def _relu_upper_bound(
    func: Any, args: Sequence[Any], kwargs: dict[str, Any]
) -> float | None | bool:
    """None for a plain ReLU, the cap for ReLU6-like clamps, False for anything else."""
    if not args:
        return False
    if func in _RELU_FUNCTIONS:
        return None
    if func is F.relu6:
        return 6.0
    if func in _HARDTANH_FUNCTIONS:
        low = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
        high = args[2] if len(args) > 2 else kwargs.get("max_val", 1.0)
        if float(low) == 0.0:
            return float(high)
    return False


def unsupported_activation_modules(model: nn.Module | dict[str, nn.Module]) -> list[str]:
    """Names of modules whose activation has no guided / deconv rule (SiLU, GELU, ...)."""
    found = []
    named = model if isinstance(model, dict) else dict(model.named_modules())
    for name, module in named.items():
        kind = type(module).__name__.lower().replace("_", "")
        if any(kind == bad or kind.startswith(bad) for bad in UNSUPPORTED_ACTIVATION_NAMES):
            found.append(f"{name} ({type(module).__name__})")
    return found


def count_hooks(model: nn.Module) -> int:
    """Every module hook on the tree, plus the global ones (0 after any session)."""
    total = 0
    for module in model.modules():
        for attribute in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
        ):
            total += len(getattr(module, attribute, {}))
    from torch.nn.modules import module as module_globals

    for attribute in (
        "_global_forward_hooks",
        "_global_forward_pre_hooks",
        "_global_backward_hooks",
    ):
        total += len(getattr(module_globals, attribute, {}))
    return total


@dataclass(frozen=True)
class Tap:
    """A layer's input or output, reduced inside its forward hook: only `reduce`'s (small)
    result is kept, never the activation itself (feature vectors, channel maxima).

    `reduce` gets the detached tensor (B, ...) and returns a (B, ...) tensor; it runs under
    no_grad, before anything downstream can modify the tensor in place. A module that runs
    more than once per forward keeps its last call's result.
    """

    name: str  # the key of the result in `HookSession.tapped`
    layer: str  # a module name, as in `named_modules`
    reduce: Callable[[torch.Tensor], torch.Tensor]
    side: Literal["input", "output"] = "output"


class HookSession:
    """One forward with activation captures, then backward passes under any ReLU rule.

    Use through `hook_session(...)`; outside the `with` block nothing is registered.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str],
        relu_rules: bool,
        modules: dict[str, nn.Module] | None = None,
        taps: Sequence[Tap] = (),
    ) -> None:
        self.model = model
        self._modules = modules
        self.layer_names = list(dict.fromkeys(layers))
        self.relu_rules = relu_rules
        self.taps = list(taps)
        self.activations: dict[str, torch.Tensor] = {}
        # Layers that output several maps (`cnnlens.models.levels`): their captured levels;
        # `activations` holds them stacked into one tensor.
        self.levels: dict[str, dict[str, torch.Tensor]] = {}
        self.tapped: dict[str, torch.Tensor] = {}  # by Tap.name, from the last forward
        self.input: torch.Tensor | None = None
        self._state = _RuleState()
        self._relu_rules: _ReluRules | None = None
        self._unsupported_modules: list[str] = []
        self._input_grad = False

    def forward(self, x: torch.Tensor, input_grad: bool = True) -> Any:
        """Run the model on a copy of `x` (the caller's tensor is never touched): its logits,
        or a detector's per-image detections (`cnnlens.models.detection`)."""
        self.activations.clear()
        self.levels.clear()
        self.tapped.clear()
        self._input_grad = input_grad
        self.input = x.detach().clone().requires_grad_(input_grad)
        if self._relu_rules is not None:
            with intercept_torch_functions(self._relu_rules):
                output = self.model(self.input)
        else:
            output = self.model(self.input)
        if not isinstance(output, torch.Tensor) and not is_detections(output):
            raise IncompatibleModelError(
                "the model must return a logits tensor, or a detector's detections per image "
                '(a list of {"boxes", "labels", "scores"})'
            )
        return output

    def gradients(
        self,
        scores: torch.Tensor,
        wrt: Sequence[torch.Tensor],
        rule: ReluRule | str = ReluRule.GRADIENT,
        retain_graph: bool = True,
    ) -> list[torch.Tensor]:
        """d(sum of scores)/d(each tensor in wrt) under `rule`; samples stay independent."""
        rule = ReluRule(rule)
        if rule is not ReluRule.GRADIENT:
            self.check_rule_supported(rule)
        if not scores.requires_grad:  # constant scores (a box no copy detects): no graph
            return [torch.zeros_like(tensor) for tensor in wrt]
        self._state.rule = rule
        try:
            grads = torch.autograd.grad(
                scores.sum(), list(wrt), retain_graph=retain_graph, allow_unused=True
            )
        finally:
            self._state.rule = ReluRule.GRADIENT
        return [
            torch.zeros_like(tensor) if grad is None else grad
            for tensor, grad in zip(wrt, grads, strict=True)
        ]

    def captured(self, name: str) -> list[torch.Tensor]:
        """The tensors a layer's gradient is taken at: its output, or each of its levels."""
        if name in self.levels:
            return list(self.levels[name].values())
        return [self.activations[name]]

    def layer_gradient(self, name: str, gradients: Sequence[torch.Tensor]) -> torch.Tensor:
        """The gradients at `captured(name)` as one tensor shaped like `activations[name]`
        (levels go through the transform their activations went through)."""
        if name in self.levels:
            return stack_levels(dict(zip(self.levels[name], gradients, strict=True)))
        (gradient,) = gradients
        return gradient

    def check_rule_supported(self, rule: ReluRule) -> None:
        if self._relu_rules is None:
            raise RuntimeError("open the session with relu_rules=True to use guided/deconv rules")
        problems = self._unsupported_modules + sorted(self._relu_rules.unsupported)
        if problems:
            raise IncompatibleModelError(
                f"the {rule.value} ReLU rule is undefined for this model's activations "
                f"({', '.join(problems[:5])}); use gradient-based methods instead"
            )
        if self._relu_rules.relu_calls == 0:
            raise IncompatibleModelError(
                f"the {rule.value} rule needs ReLU activations and this model has none"
            )

    @contextmanager
    def _registered(self) -> Iterator[None]:
        modules = self._modules if self._modules is not None else dict(self.model.named_modules())
        wanted = [*self.layer_names, *(tap.layer for tap in self.taps)]
        missing = [name for name in wanted if name not in modules]
        if missing:
            raise unknown_layer(missing[0], list(modules))
        with ExitStack() as stack:
            for name in self.layer_names:
                handle = modules[name].register_forward_hook(self._capture_hook(name))
                stack.callback(handle.remove)
            for tap in self.taps:
                module = modules[tap.layer]
                if tap.side == "input":
                    handle = module.register_forward_pre_hook(self._tap_input_hook(tap))
                else:
                    handle = module.register_forward_hook(self._tap_output_hook(tap))
                stack.callback(handle.remove)
            if self.relu_rules:
                self._unsupported_modules = unsupported_activation_modules(modules)
                self._relu_rules = _ReluRules(self._state)
                stack.callback(self._drop_relu_rules)
            yield

    def _drop_relu_rules(self) -> None:
        self._relu_rules = None

    def _capture_hook(self, name: str) -> Callable[..., Any]:
        def capture(module: nn.Module, inputs: Any, output: Any) -> Any:
            if is_levels(output):
                levels = {key: _capturable(level) for key, level in output.items()}
                self.levels[name] = levels
                with torch.no_grad():
                    self.activations[name] = stack_levels(levels)
                copies = ((key, level.clone()) for key, level in levels.items())
                return type(output)(copies) if isinstance(output, dict) else dict(copies)
            if not isinstance(output, torch.Tensor):
                raise LayerNotFoundError(
                    f"layer {name!r} outputs neither a tensor nor a dict of (B, C, h, w) maps"
                )
            captured = _capturable(output)
            self.activations[name] = captured
            # Downstream gets a copy, so a later in-place op cannot rewrite what we captured.
            return captured.clone()

        return capture

    def _tap_input_hook(self, tap: Tap) -> Callable[[nn.Module, Any], None]:
        def capture(module: nn.Module, inputs: Any) -> None:
            self._keep(tap, inputs[0] if isinstance(inputs, tuple) and inputs else inputs)

        return capture

    def _tap_output_hook(self, tap: Tap) -> Callable[[nn.Module, Any, Any], None]:
        def capture(module: nn.Module, inputs: Any, output: Any) -> None:
            self._keep(tap, output)

        return capture

    def _keep(self, tap: Tap, value: Any) -> None:
        if not isinstance(value, torch.Tensor):
            side = "input" if tap.side == "input" else "output"
            raise LayerNotFoundError(f"layer {tap.layer!r}: its {side} is not a single tensor")
        with torch.no_grad():
            self.tapped[tap.name] = tap.reduce(value.detach())


def _capturable(output: torch.Tensor) -> torch.Tensor:
    """The output itself, or when nothing below it needs a graph a detached copy that
    requires grad: the backward then stops right there."""
    return output if output.requires_grad else output.detach().requires_grad_(True)


@contextmanager
def frozen_eval(model: nn.Module) -> Iterator[dict[str, nn.Module]]:
    """Eval mode and frozen parameters under the model's session lock; all restored on exit
    (every module's own training flag, every parameter's requires_grad), on error too: the
    only way cnnlens runs a caller's module.

    Yields the named modules: the tree's walk is kept across sessions (`module_tree`; it is
    a visible share of a small model's forward), and the callers reuse it.
    """
    with model_lock(model):
        tree = module_tree(model, registrations())
        modules = tree.named.values()
        trained = [module for module in modules if module.training]
        needs_grad = [p for p in tree.parameters if p.requires_grad]
        try:
            if trained:  # eval() walks and sets every module: skip if done
                model.eval()
            for parameter in needs_grad:
                parameter.requires_grad_(False)
            yield tree.named
        finally:
            for parameter in needs_grad:
                parameter.requires_grad_(True)
            if trained or any(map(_training, modules)):
                was_training = set(map(id, trained))
                for module in modules:
                    module.training = id(module) in was_training


@contextmanager
def hook_session(
    model: nn.Module,
    layers: Sequence[str] = (),
    relu_rules: bool = False,
    taps: Sequence[Tap] = (),
) -> Iterator[HookSession]:
    """Open a session: eval mode, frozen parameters, hooks registered; all undone on exit.

    Args:
        model: the module tree to explain.
        layers: module names (as in `named_modules`) whose outputs to capture.
        relu_rules: route ReLUs through the rule switch (needed for guided / deconv).
        taps: layers whose input or output is reduced during each forward (`Tap`).
    """
    with frozen_eval(model) as modules:
        session = HookSession(model, layers, relu_rules, modules, taps)
        try:
            with session._registered():
                yield session
        finally:
            session.activations.clear()
            session.levels.clear()
            session.input = None


ModuleObserver = Callable[[str, nn.Module, Any], None]


@contextmanager
def observe_modules(model: nn.Module, observe: ModuleObserver) -> Iterator[None]:
    """`observe(name, module, output)` after every named module's forward (the layer
    inventory's trace), under the same lock and restore guarantees as `hook_session`."""
    with frozen_eval(model) as modules:
        handles = []
        try:
            for name, module in modules.items():
                if name:
                    handles.append(module.register_forward_hook(_observer(name, observe)))
            yield
        finally:
            for handle in handles:
                handle.remove()


def _observer(name: str, observe: ModuleObserver) -> Callable[[nn.Module, Any, Any], None]:
    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        observe(name, module, output)

    return hook


class FunctionInterceptor(Protocol):
    """Stands between the caller and every torch function: calls `func` itself (or not)."""

    def __call__(
        self, func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]
    ) -> Any: ...


class _InterceptMode(TorchFunctionMode):
    def __init__(self, intercept: FunctionInterceptor) -> None:
        super().__init__()
        self.intercept = intercept

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        return self.intercept(func, args, kwargs or {})


@contextmanager
def intercept_torch_functions(intercept: FunctionInterceptor) -> Iterator[None]:
    """Every torch function and tensor method called on this thread inside the block goes
    through `intercept(func, args, kwargs)` (a thread-local torch-function mode; the
    receptive-field tracer, the op-graph recorder and the service's deadline stop use it)."""
    with _InterceptMode(intercept):
        yield


@contextmanager
def substitute_output(
    model: nn.Module, layer: str, replace: Callable[[torch.Tensor], torch.Tensor]
) -> Iterator[None]:
    """Inside the block, `layer`'s output is `replace(output)` (ablations: the rest of the
    model sees the substitute), under the same lock and restore guarantees as `hook_session`."""
    with frozen_eval(model) as modules:
        if layer not in modules:
            raise unknown_layer(layer, list(modules))

        def substitute(module: nn.Module, inputs: Any, output: Any) -> torch.Tensor:
            if not isinstance(output, torch.Tensor):
                raise LayerNotFoundError(f"layer {layer!r} does not output a single tensor")
            return replace(output)

        handle = modules[layer].register_forward_hook(substitute)
        try:
            yield
        finally:
            handle.remove()


_MODULE_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)
_GLOBAL_HOOK_DICTS = (
    "_global_forward_hooks",
    "_global_forward_hooks_with_kwargs",
    "_global_forward_hooks_always_called",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
)


class _TensorSlot:
    """A parameter's or buffer's tensor as it was: the object and the data it held."""

    __slots__ = ("tensor", "data", "pointer")

    def __init__(self, tensor: torch.Tensor | None) -> None:
        self.tensor = tensor
        self.data = None if tensor is None else tensor.data  # an alias: keeps the storage alive
        self.pointer = None if tensor is None else tensor.data_ptr()

    def restore(self, slots: dict[str, Any], name: str) -> None:
        if slots.get(name) is not self.tensor:
            slots[name] = self.tensor  # a library swapped the object (Zennit's ParamMod)
        tensor, data = self.tensor, self.data
        if tensor is None or data is None:
            return
        if tensor.data_ptr() != self.pointer or tensor.shape != data.shape:
            tensor.data = data  # a library swapped its data (a merged batch norm)


class _ModuleState:
    """What a library may change on one module: hooks, attributes, children, tensors.

    Taken on every call of a library method: only cheap reads (the module's own dicts, not
    nn.Module's attribute lookup), and hook dicts only where they hold something.
    """

    __slots__ = (
        "module", "hooks", "hook_count", "attributes", "children", "parameters", "buffers",
    )  # fmt: skip

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.attributes = dict(vars(module))
        self.hook_count = _hook_count(self.attributes)
        self.hooks: dict[str, tuple[Any, ...]] = {}
        if self.hook_count:
            self.hooks = {
                name: tuple(self.attributes.get(name) or ()) for name in _MODULE_HOOK_DICTS
            }
        self.children = dict(module._modules)
        self.parameters = {name: _TensorSlot(p) for name, p in module._parameters.items()}
        self.buffers = {name: _TensorSlot(b) for name, b in module._buffers.items()}

    def restore(self) -> None:
        current = vars(self.module)
        if _hook_count(current) != self.hook_count:
            self._restore_hooks(current)
        self._restore_attributes(current)
        module = self.module
        for slots, kept_slots in (
            (module._parameters, self.parameters),
            (module._buffers, self.buffers),
        ):
            if len(slots) != len(kept_slots):
                for key in [key for key in slots if key not in kept_slots]:
                    del slots[key]
            for key, slot in kept_slots.items():
                slot.restore(slots, key)
        if module._modules != self.children:
            module._modules.clear()
            module._modules.update(self.children)

    def _restore_hooks(self, current: dict[str, Any]) -> None:
        """Remove the hooks added since the snapshot."""
        for name in _MODULE_HOOK_DICTS:
            hooks = current.get(name)
            kept = self.hooks.get(name, ())
            if hooks is not None and len(hooks) != len(kept):
                for key in [key for key in hooks if key not in kept]:
                    del hooks[key]

    def _restore_attributes(self, current: dict[str, Any]) -> None:
        """Put back the module's attributes (its `vars`) as they were."""
        attributes = self.attributes
        if len(current) == len(attributes) and all(
            map(operator.is_, current.values(), attributes.values())
        ):
            return
        for key in [key for key in current if key not in attributes]:
            del current[key]  # DeepLIFT's module.input / .output, a canonizer's forward
        for key, value in attributes.items():
            if current.get(key, _MISSING) is not value:
                current[key] = value


_MISSING = object()


def _hook_count(attributes: dict[str, Any]) -> int:
    """Hooks in a module's hook dicts (its `vars`), counted at C speed."""
    return sum(map(len, filter(None, map(attributes.get, _MODULE_HOOK_DICTS))))


@contextmanager
def library_hooks(model: nn.Module) -> Iterator[dict[str, nn.Module]]:
    """A session for a library that registers hooks of its own on the model (Captum, Zennit).

    Eval mode and frozen parameters under the model's lock, as `hook_session`; on exit, on
    success or error, every module hook (and global one) the library added is removed, and
    every attribute, child, parameter or buffer it set or swapped on any module of the tree
    is put back as it was. Yields the named modules.
    """
    with frozen_eval(model) as modules:
        states = [_ModuleState(module) for module in modules.values()]
        global_hooks = {name: set(getattr(torch_module, name, {})) for name in _GLOBAL_HOOK_DICTS}
        try:
            yield modules
        finally:
            for state in states:
                state.restore()
            for name, kept in global_hooks.items():
                hooks = getattr(torch_module, name, None)
                if hooks is not None:
                    for key in [key for key in hooks if key not in kept]:
                        del hooks[key]
