"""A model's named modules and parameters, walked once and walked again only when the tree changed.

`named_modules()` is a recursive Python generator: on a 270-module network it costs about as
much as a small layer's convolution, on every call. The walk is kept per model and is redone
when the tree may have changed since:

- adding or replacing a submodule or a parameter, anywhere in any model, by `setattr`,
  `add_module`, `register_parameter` or a container's methods, passes through torch's global
  registration hooks, which move a counter (`hooks.registrations`) that every kept walk is
  stamped with;
- deleting one (`del`, `delattr`) passes through no hook, but lowers the count of child or
  parameter slots of the walk's modules, which is checked too (a C-level sum).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from torch import nn


@dataclass(frozen=True)
class _Walk:
    """One walk's results. It holds no strong reference to the root, so that the cache never
    keeps a model alive."""

    children: dict[str, nn.Module]  # named_modules() without the root ("")
    parameters: list[nn.Parameter]  # model.parameters(): shared ones once
    child_slots: list[dict[str, Any]]  # every module's _modules, root included
    parameter_slots: list[dict[str, Any]]  # every module's _parameters
    slot_counts: tuple[int, int]
    generation: int

    def current(self, generation: int) -> bool:
        return self.generation == generation and self.slot_counts == _counts(
            self.child_slots, self.parameter_slots
        )


def _counts(
    child_slots: list[dict[str, Any]], parameter_slots: list[dict[str, Any]]
) -> tuple[int, int]:
    return sum(map(len, child_slots)), sum(map(len, parameter_slots))


def _walk(model: nn.Module, generation: int) -> _Walk:
    named = dict(model.named_modules())
    child_slots = [module._modules for module in named.values()]
    parameter_slots = [module._parameters for module in named.values()]
    # What `model.parameters()` yields (shared parameters once), without a second walk.
    parameters = {id(p): p for slots in parameter_slots for p in slots.values() if p is not None}
    del named[""]
    return _Walk(
        children=named,
        parameters=list(parameters.values()),
        child_slots=child_slots,
        parameter_slots=parameter_slots,
        slot_counts=_counts(child_slots, parameter_slots),
        generation=generation,
    )


_WALKS: weakref.WeakKeyDictionary[nn.Module, _Walk] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class ModuleTree:
    named: dict[str, nn.Module]  # as dict(model.named_modules()): "" is the model itself
    parameters: list[nn.Parameter]  # as list(model.parameters())


def module_tree(model: nn.Module, generation: int) -> ModuleTree:
    """The model's named modules and parameters as they are now.

    `generation`: the count of registrations so far (`hooks.registrations`), read before
    this call, so that a registration during the walk makes the next call walk again. Callers
    hold the model's session lock, so the tree does not change under the check.
    """
    walk = _WALKS.get(model)
    if walk is None or not walk.current(generation):
        walk = _WALKS[model] = _walk(model, generation)
    return ModuleTree({"": model, **walk.children}, walk.parameters)
