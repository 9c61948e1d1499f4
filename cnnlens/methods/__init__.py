"""Interpretation methods: one file each, registered by name."""

from cnnlens.methods.base import (
    METHODS,
    Method,
    MethodContext,
    MethodOutput,
    MethodParams,
    get_method,
    method_names,
    register,
)
from cnnlens.methods.run import RunResult, attribute, run_methods

__all__ = [
    "METHODS",
    "Method",
    "MethodContext",
    "MethodOutput",
    "MethodParams",
    "RunResult",
    "attribute",
    "get_method",
    "method_names",
    "register",
    "run_methods",
]
