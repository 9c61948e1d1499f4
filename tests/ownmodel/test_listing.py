"""The honest model list and the offline fail-fast (no hub retries)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import cnnlens
from cnnlens.cli import main
from cnnlens.errors import WeightsError
from cnnlens.models import availability, loadable_models


@pytest.fixture
def empty_caches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch"))
    monkeypatch.setattr(availability, "timm_cached", lambda arch: None)
    monkeypatch.setattr(availability, "_cached_timm", lambda: [])

    def unreachable(name: str, host: str) -> None:  # the machine is offline
        raise WeightsError(f"weights of {name} are not cached; " + availability.HOW_TO_LOCAL)

    monkeypatch.setattr(availability, "ensure_downloadable", unreachable)


def test_default_listing_is_what_loads(empty_caches: None) -> None:
    listings = loadable_models(configured=("plants",))
    assert [(m.name, m.weights) for m in listings] == [
        ("efficientnet_lite0", "embedded package"),
        ("plants", "configured"),
    ]


def test_all_marks_models_without_feature_maps() -> None:
    listings = {m.name: m for m in loadable_models(include_all=True)}
    assert listings["timm:resnet18"].feature_maps
    assert not listings["timm:vit_base_patch16_224"].feature_maps
    assert len(listings) > 1000


def test_uncached_weights_fail_at_once_with_the_how_to(empty_caches: None) -> None:
    started = time.process_time()
    for name in ("timm:resnet18", "torchvision:resnet18"):
        with pytest.raises(WeightsError, match="give local weights"):
            cnnlens.load_model(name)
    assert time.process_time() - started < 3.0
    cnnlens.load_model("timm:resnet18", weights="none")  # random weights need no download


def test_cli_lists_what_loads_with_weights_source(
    empty_caches: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "cnnlens.toml"
    config.write_text(
        'default_model = "plants"\n[[models]]\nname = "plants"\n'
        'arch = "timm:resnet18"\nweights = "none"\n'
    )
    started = time.process_time()
    assert main(["models", "--config", str(config)]) == 0
    assert time.process_time() - started < 3.0  # offline: no hub lookups
    assert capsys.readouterr().out.splitlines() == [
        "efficientnet_lite0  (default)  weights: embedded package",
        "plants  weights: configured",
    ]


def test_cli_all_marks_models_without_feature_maps(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--all", "--filter", "vit_base_patch16_224"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all("no feature maps" in line for line in lines)
    assert main(["models", "--all", "--filter", "timm:resnet18", "--json"]) == 0
    entry = next(e for e in json.loads(capsys.readouterr().out) if e["name"] == "timm:resnet18")
    assert entry["feature_maps"] is True and entry["weights"]
