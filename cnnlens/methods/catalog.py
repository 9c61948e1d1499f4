"""Imports every method module in this package so that each registers itself."""

from __future__ import annotations

import importlib
import pkgutil

import cnnlens.methods as _package

_NOT_METHODS = {"base", "catalog", "run", "cam_base"}

for _info in pkgutil.iter_modules(_package.__path__):
    if _info.name not in _NOT_METHODS and not _info.name.startswith("_"):
        importlib.import_module(f"{_package.__name__}.{_info.name}")
