"""cnnlens: explains what image CNNs see.

    import cnnlens
    model = cnnlens.load_model("efficientnet_lite0")        # or cnnlens.wrap(my_module, ...)
    maps = cnnlens.explain(model, "cat.jpg", ["grad_cam", "saliency"])
    maps[0].overlay().save("cat-grad-cam.png")              # in a notebook: just `maps`
    result = cnnlens.compare(model, ["cat.jpg"])            # methods side by side, with scores
    run = cnnlens.run_audit("photos/", "audit-photos", cnnlens.AuditConfig())

`cnnlens.compare` is both the subpackage (`from cnnlens.compare import CompareOptions`) and
callable: `cnnlens.compare(...)` is `cnnlens.compare.compare(...)`. Type-checked code may
prefer `from cnnlens.compare import compare`. The REST client is `cnnlens.client.Client`.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from cnnlens._lazy import lazy_exports
from cnnlens.errors import CnnlensError

if TYPE_CHECKING:
    from cnnlens.api.models import ClassScore
    from cnnlens.audit.config import AuditConfig
    from cnnlens.audit.local import run_audit
    from cnnlens.compare.options import CompareOptions
    from cnnlens.explain import Explanation, Explanations, explain
    from cnnlens.features.vectors import features
    from cnnlens.heap import reuse_heap
    from cnnlens.methods import attribute, method_names, run_methods
    from cnnlens.models import DEFAULT_MODEL, LoadedModel, list_models, load_model, wrap
    from cnnlens.targets import BoxTarget, ChannelTarget, ClassTarget, RegionTarget, Target

# The subpackages a user reaches from here (`cnnlens.compare` is also callable).
SUBPACKAGES = ("audit", "client", "compare", "methods", "models")

# Imported on first use, so that light entry points (`cnnlens --help`, the client) do not
# pay for torch.
__getattr__ = lazy_exports(
    __name__,
    {
        "AuditConfig": "cnnlens.audit.config",
        "run_audit": "cnnlens.audit.local",
        "CompareOptions": "cnnlens.compare.options",
        "ClassScore": "cnnlens.api.models",
        "Explanation": "cnnlens.explain",
        "Explanations": "cnnlens.explain",
        "explain": "cnnlens.explain",
        "features": "cnnlens.features.vectors",
        "attribute": "cnnlens.methods",
        "method_names": "cnnlens.methods",
        "run_methods": "cnnlens.methods",
        "DEFAULT_MODEL": "cnnlens.models",
        "LoadedModel": "cnnlens.models",
        "list_models": "cnnlens.models",
        "load_model": "cnnlens.models",
        "wrap": "cnnlens.models",
        "reuse_heap": "cnnlens.heap",
        "Target": "cnnlens.targets",
        "ClassTarget": "cnnlens.targets",
        "RegionTarget": "cnnlens.targets",
        "BoxTarget": "cnnlens.targets",
        "ChannelTarget": "cnnlens.targets",
    },
    submodules=SUBPACKAGES,
)


class _Package(types.ModuleType):
    """Keeps `cnnlens.explain` and `cnnlens.features` the functions when the submodules of
    those names are imported (the import system would otherwise bind the modules over them);
    `features` stays lazy, so that the torch-free audit store can import its subpackage."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "explain" and isinstance(value, types.ModuleType):
            value = value.explain
        if name == "features" and isinstance(value, types.ModuleType):
            return  # resolved by __getattr__ on first use: the function
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__all__ = [
    "DEFAULT_MODEL",
    "AuditConfig",
    "BoxTarget",
    "ChannelTarget",
    "ClassScore",
    "ClassTarget",
    "CnnlensError",
    "CompareOptions",
    "Explanation",
    "Explanations",
    "LoadedModel",
    "RegionTarget",
    "Target",
    "attribute",
    "compare",
    "explain",
    "features",
    "list_models",
    "load_model",
    "method_names",
    "reuse_heap",
    "run_audit",
    "run_methods",
    "wrap",
]
__version__ = "0.1.0"


def __dir__() -> list[str]:
    """The public API (and so tab completion and `help(cnnlens)`), not the plumbing."""
    return sorted({*__all__, *SUBPACKAGES, "__version__"})
