"""Loading models: the embedded default, local weight files, explicit random weights, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cnnlens.errors import ModelNotFoundError, WeightsError
from cnnlens.models import LoadedModel, load_model
from cnnlens.models.zoo import embedded_weights_path
from tests.conftest import EGYPTIAN_CAT, ESPRESSO


def test_default_model_recognizes_the_photos(
    default_model: LoadedModel, chelsea_batch: torch.Tensor, coffee_batch: torch.Tensor
) -> None:
    with torch.no_grad():
        cat = default_model.module(chelsea_batch).softmax(1)
        cup = default_model.module(coffee_batch).softmax(1)
    assert int(cat.argmax()) == EGYPTIAN_CAT
    assert default_model.categories[EGYPTIAN_CAT] == "Egyptian cat"
    assert int(cup.argmax()) == ESPRESSO
    assert default_model.categories[ESPRESSO] == "espresso"
    assert float(cat.max()) > 0.5 and float(cup.max()) > 0.5


def test_default_model_is_frozen_and_described(default_model: LoadedModel) -> None:
    assert not default_model.module.training
    assert not any(p.requires_grad for p in default_model.module.parameters())
    assert default_model.input_size == (224, 224)
    assert default_model.preprocessing.mean == (0.5, 0.5, 0.5)
    assert default_model.preprocessing.interpolation == "bicubic"
    assert default_model.weights_sha256 is not None and len(default_model.weights_sha256) == 64
    assert default_model.default_layer == "bn2"


def test_embedded_weights_are_mapped_tensor_by_tensor(default_model: LoadedModel) -> None:
    original = torch.load(embedded_weights_path(), map_location="cpu", weights_only=True)
    mapped = default_model.module.state_dict()
    assert len(original) == len(mapped)
    for (source, tensor), (target, loaded) in zip(original.items(), mapped.items(), strict=True):
        assert torch.equal(tensor, loaded), (source, target)


def test_local_weight_files_round_trip(tmp_path: Path, default_model: LoadedModel) -> None:
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in default_model.module.state_dict().items()}
    save_file(state, str(tmp_path / "lite0.safetensors"))
    torch.save(state, tmp_path / "lite0.pt")
    for name in ("lite0.safetensors", "lite0.pt"):
        loaded = load_model("efficientnet_lite0", weights=tmp_path / name)
        assert loaded.weights_source.endswith(name)
        for key, tensor in loaded.module.state_dict().items():
            assert torch.equal(tensor, state[key])


def test_mismatched_weights_name_the_keys(tmp_path: Path) -> None:
    model = load_model("torchvision:resnet18", weights="none")
    state = model.module.state_dict()
    state["fc.weight"] = torch.zeros(10, 512)
    state.pop("layer1.0.conv1.weight")
    state["extra.thing"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(WeightsError) as raised:
        load_model("torchvision:resnet18", weights=tmp_path / "bad.pth")
    message = str(raised.value)
    assert "layer1.0.conv1.weight" in message
    assert "extra.thing" in message
    assert "fc.weight: file (10, 512) vs model (1000, 512)" in message


def test_unreadable_and_pickled_code_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        load_model("timm:resnet18", weights=tmp_path / "junk.pt")
    torch.save({"fc.weight": torch.zeros(1), "code": print}, tmp_path / "code.pt")
    with pytest.raises(WeightsError):  # weights_only=True refuses arbitrary objects
        load_model("timm:resnet18", weights=tmp_path / "code.pt")
    with pytest.raises(WeightsError, match="not found"):
        load_model("timm:resnet18", weights=tmp_path / "missing.pt")


def test_random_weights_only_when_asked_and_unknown_names() -> None:
    random = load_model("timm:resnet18", weights="none")
    assert random.weights_source == "none" and random.weights_sha256 is None
    assert random.default_layer == "layer4"
    for name in ("nope", "torchvision:nope", "timm:nope", "other:resnet18"):
        with pytest.raises(ModelNotFoundError):
            load_model(name, weights="none")
