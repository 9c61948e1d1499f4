"""cnnlens: explains what image CNNs see."""

from cnnlens.errors import CnnlensError
from cnnlens.explain import ClassScore, Explanation, Explanations, explain
from cnnlens.methods import attribute, method_names, run_methods
from cnnlens.models import DEFAULT_MODEL, LoadedModel, list_models, load_model

__all__ = [
    "DEFAULT_MODEL",
    "ClassScore",
    "CnnlensError",
    "Explanation",
    "Explanations",
    "LoadedModel",
    "attribute",
    "explain",
    "list_models",
    "load_model",
    "method_names",
    "run_methods",
]
__version__ = "0.1.0"
