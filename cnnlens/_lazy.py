"""Lazy package exports: a name is imported from its module on first use (PEP 562), so that
light entry points (`cnnlens --help`, the client, the audit store) do not pay for torch."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Collection, Mapping
from typing import Any


def lazy_exports(
    package: str, homes: Mapping[str, str], submodules: Collection[str] = ()
) -> Callable[[str], Any]:
    """A module-level `__getattr__` for `package` that imports `name` from `homes[name]`, or
    the subpackage `package.name` itself for a name in `submodules`.

    The value is then cached in the package, so later lookups skip this function.
    """

    def __getattr__(name: str) -> Any:
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")  # the import binds it
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        vars(sys.modules[package])[name] = value
        return value

    return __getattr__
