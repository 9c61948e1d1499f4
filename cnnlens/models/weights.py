"""Reading weights files safely and fitting them to an architecture with clear errors."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from cnnlens.errors import WeightsError

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a state dict from .safetensors or a pickle read with weights_only=True."""
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise WeightsError(f"weights file must be one of {WEIGHT_SUFFIXES}, got {path.name!r}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded: object = load_file(str(path), device="cpu")
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any parse failure is the file's fault
        raise WeightsError(f"cannot read weights file {path.name!r}: {error}") from error
    for key in ("state_dict", "model"):  # checkpoints that nest the weights
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(value, torch.Tensor) for value in loaded.values()
    ):
        raise WeightsError(f"{path.name!r} does not hold a state dict of tensors")
    return strip_prefixes({str(key): value for key, value in loaded.items()})


_PREFIXES = ("module.", "model.")  # DataParallel, Lightning


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a `module.` or `model.` prefix that every key carries (repeatedly)."""
    changed = True
    while changed and state:
        changed = False
        for prefix in _PREFIXES:
            if all(key.startswith(prefix) for key in state):
                state = {key[len(prefix) :]: value for key, value in state.items()}
                changed = True
    return state


def fit_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load `state` strictly, naming every missing, unexpected or mis-shaped key on failure."""
    expected = module.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    misshaped = [
        f"{key}: file {tuple(state[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in expected
        if key in state and state[key].shape != expected[key].shape
    ]
    if missing or unexpected or misshaped:
        parts = []
        if missing:
            parts.append(f"missing keys {_preview(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_preview(unexpected)}")
        if misshaped:
            parts.append(f"shape mismatches {_preview(misshaped)}")
        raise WeightsError(f"weights {source!r} do not fit the architecture: " + "; ".join(parts))
    module.load_state_dict(dict(state), strict=True)


def map_in_order(module: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a state dict whose tensors come in the model's order under other names.

    Every position must agree in shape; the first disagreement is reported.
    """
    target_keys = list(module.state_dict().items())
    source_items = list(state.items())
    if len(target_keys) != len(source_items):
        raise WeightsError(
            f"weights hold {len(source_items)} tensors, the architecture {len(target_keys)}"
        )
    renamed: dict[str, torch.Tensor] = {}
    for (target_key, target), (source_key, tensor) in zip(target_keys, source_items, strict=True):
        if tensor.shape != target.shape:
            raise WeightsError(
                f"tensor {source_key!r} {tuple(tensor.shape)} does not fit "
                f"{target_key!r} {tuple(target.shape)}"
            )
        renamed[target_key] = tensor
    return renamed


def _preview(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return f"[{shown}{', …' if len(items) > limit else ''}] ({len(items)})"
