"""What this installation can load without a download, and failing fast when offline."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from cnnlens.errors import WeightsError
from cnnlens.models import zoo

# Families of architectures without 4-D feature maps: the map methods need (B, C, H, W).
_NO_FEATURE_MAPS = (
    "vit",
    "samvit",
    "deit",
    "beit",
    "mixer",
    "swin",
    "eva",
    "cait",
    "xcit",
    "resmlp",
)

HOW_TO_LOCAL = (
    "give local weights instead: load_model(name, weights='path/to/file.safetensors'), "
    'or weights = "..." in the service\'s [[models]] entry'
)


@dataclass(frozen=True)
class ModelListing:
    name: str
    weights: str  # where its weights come from: "embedded package", a cache path, "download"
    feature_maps: bool  # False: no 4-D feature maps, the map methods cannot explain it


def has_feature_maps(name: str) -> bool:
    arch = name.partition(":")[2] or name
    return not any(arch.startswith(prefix) for prefix in _NO_FEATURE_MAPS)


def torchvision_cached(arch: str) -> Path | None:
    """The torch hub cache file of torchvision's default weights for arch, if present."""
    import torch
    import torchvision

    try:
        url = torchvision.models.get_model_weights(arch).DEFAULT.url
    except (ValueError, AttributeError):
        return None
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    return path if path.is_file() else None


def timm_cached(arch: str) -> Path | None:
    """The Hugging Face cache folder of timm's default weights for arch, if present."""
    import timm
    from huggingface_hub.constants import HF_HUB_CACHE

    try:
        config = timm.models.get_pretrained_cfg(arch)
    except Exception:
        return None
    hub_id = getattr(config, "hf_hub_id", None) if config is not None else None
    if not hub_id:
        return None
    folder = Path(HF_HUB_CACHE) / ("models--" + hub_id.replace("/", "--"))
    return folder if any(folder.glob("snapshots/*/*")) else None


def loadable_models(
    include_all: bool = False, configured: tuple[str, ...] = ()
) -> list[ModelListing]:
    """Models this installation loads without a download (embedded, cached, configured);
    include_all adds every torchvision and timm architecture (weights: "download")."""
    import timm
    import torchvision

    listings = [ModelListing(zoo.DEFAULT_MODEL, "embedded package", True)]
    listings += [ModelListing(name, "configured", has_feature_maps(name)) for name in configured]
    for arch in torchvision.models.list_models(torchvision.models):
        path = torchvision_cached(arch)
        if path is not None or include_all:
            name = f"torchvision:{arch}"
            listings.append(ModelListing(name, str(path or "download"), has_feature_maps(name)))
    for arch in timm.list_models() if include_all else _cached_timm():
        path = timm_cached(arch)
        name = f"timm:{arch}"
        listings.append(ModelListing(name, str(path or "download"), has_feature_maps(name)))
    return list({listing.name: listing for listing in listings}.values())


def _cached_timm() -> list[str]:
    from huggingface_hub.constants import HF_HUB_CACHE

    root = Path(HF_HUB_CACHE)
    found = []
    for folder in root.glob("models--timm--*") if root.is_dir() else []:
        arch = folder.name.removeprefix("models--timm--")
        if any(folder.glob("snapshots/*/*")):
            found.append(arch)
    return sorted(found)


def ensure_downloadable(name: str, host: str) -> None:
    """Fail at once, with how to give local weights, when `host` cannot be reached."""
    try:
        socket.create_connection((host, 443), timeout=1.5).close()
    except OSError as error:
        raise WeightsError(
            f"weights of {name} are not cached and {host} cannot be reached ({error}); "
            + HOW_TO_LOCAL
        ) from error
