"""Models: loading, preprocessing, layer inventory and the hook manager."""

from cnnlens.models.availability import ModelListing, loadable_models
from cnnlens.models.custom import wrap
from cnnlens.models.hooks import HookSession, ReluRule, count_hooks, hook_session
from cnnlens.models.layers import CompatibilityReport, LayerInfo, LayerInventory, inspect_layers
from cnnlens.models.loaded import LoadedModel
from cnnlens.models.preprocess import Preprocessing
from cnnlens.models.registry import list_models, load_model
from cnnlens.models.zoo import DEFAULT_MODEL

__all__ = [
    "DEFAULT_MODEL",
    "CompatibilityReport",
    "HookSession",
    "LayerInfo",
    "LayerInventory",
    "LoadedModel",
    "ModelListing",
    "Preprocessing",
    "ReluRule",
    "count_hooks",
    "hook_session",
    "inspect_layers",
    "list_models",
    "load_model",
    "loadable_models",
    "wrap",
]
