"""The Python client of the REST service, HTTP only: Client and AsyncClient over one I/O-free
protocol (`_protocol`), parsing the bodies of `cnnlens.api`. No torch is imported.

Imports are lazy so that `cnnlens --help` does not pay for httpx, numpy or PIL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlens._lazy import lazy_exports

if TYPE_CHECKING:
    from cnnlens.client.async_client import AsyncClient
    from cnnlens.client.errors import CnnlensAPIError, CnnlensConnectionError
    from cnnlens.client.results import (
        ActivationMaxResult,
        AdversarialResult,
        Agreement,
        ChannelScore,
        ClassScore,
        CompareResult,
        ExplainResult,
        ExplanationResult,
        FeatureMapsResult,
        FiltersResult,
        Health,
        ImageComparison,
        LayerSummary,
        MethodInfo,
        MethodResult,
        ModelInfo,
        ModelSummary,
    )
    from cnnlens.client.sync import Client

__all__ = [
    "ActivationMaxResult",
    "AdversarialResult",
    "Agreement",
    "AsyncClient",
    "ChannelScore",
    "ClassScore",
    "Client",
    "CnnlensAPIError",
    "CnnlensConnectionError",
    "CompareResult",
    "ExplainResult",
    "ExplanationResult",
    "FeatureMapsResult",
    "FiltersResult",
    "Health",
    "ImageComparison",
    "LayerSummary",
    "MethodInfo",
    "MethodResult",
    "ModelInfo",
    "ModelSummary",
]


# Where each public name lives; everything else in __all__ is a result type.
_NOT_RESULTS = {
    "Client": "cnnlens.client.sync",
    "AsyncClient": "cnnlens.client.async_client",
    "CnnlensAPIError": "cnnlens.client.errors",
    "CnnlensConnectionError": "cnnlens.client.errors",
}
__getattr__ = lazy_exports(
    __name__, {name: _NOT_RESULTS.get(name, "cnnlens.client.results") for name in __all__}
)
