"""Audits of a segmentation model: the classes present (by pixel share) judged as a label set,
and methods or checks a class map cannot serve refused before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

import cnnlens
from cnnlens.audit import local
from cnnlens.audit.config import AuditConfig
from cnnlens.errors import IncompatibleModelError

LABELS = ["red", "green", "blue"]


def colour_segmenter() -> cnnlens.LoadedModel:
    """Each pixel's class is its strongest normalized RGB channel: answers known exactly."""
    eye = torch.eye(3).reshape(3, 3, 1, 1)
    first, last = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        for conv in (first, last):
            conv.weight.copy_(eye)
            conv.bias.zero_()
    return cnnlens.wrap(
        nn.Sequential(first, nn.ReLU(), last).eval(),
        labels=LABELS,
        preprocessing={"input_size": 32},
        name="colours",
    )


def halves(left: tuple[int, int, int], right: tuple[int, int, int], speck: bool) -> Image.Image:
    picture = Image.new("RGB", (64, 64), left)
    picture.paste(right, (32, 0, 64, 64))
    if speck:  # 4 green pixels of 4096: under the share that counts as present
        picture.paste((0, 255, 0), (0, 0, 2, 2))
    return picture


@pytest.fixture
def audited(tmp_path: Path) -> dict[str, dict]:
    images = tmp_path / "images"
    images.mkdir()
    halves((255, 0, 0), (0, 0, 255), speck=True).save(images / "sea.png")
    halves((255, 0, 0), (0, 0, 255), speck=False).save(images / "half.png")
    halves((0, 255, 0), (0, 255, 0), speck=False).save(images / "field.png")
    (tmp_path / "labels.csv").write_text("sea.png,red;blue\nhalf.png,red\nfield.png,green\n")
    local.run_audit(
        images,
        tmp_path / "out",
        AuditConfig(model="colours", methods=("grad_cam", "saliency")),
        labels=tmp_path / "labels.csv",
        model=colour_segmenter(),
    )
    lines = (tmp_path / "out/results.jsonl").read_text().splitlines()
    return {Path(r["name"]).stem: r for r in map(json.loads, lines)}


def test_classes_present_judged_as_a_label_set(audited: dict[str, dict]) -> None:
    sea = audited["sea"]
    shares = {p["label"]: p["pixel_share"] for p in sea["predictions"]}
    assert set(shares) == {"red", "blue", "green"}
    assert shares["red"] == pytest.approx(0.5, abs=0.01)
    assert shares["blue"] == pytest.approx(0.5, abs=0.01)
    assert 0 < shares["green"] < 0.01  # a speck is listed but not counted as present
    assert sea["correct"] is True  # {red, blue} both present, the speck ignored
    assert audited["half"]["correct"] is False  # blue is present too: the sets differ
    field = audited["field"]
    assert field["correct"] is True
    assert field["predicted_name"] == "green"
    assert field["predictions"][0]["pixel_share"] == pytest.approx(1.0)
    # confidence: the top class's mean softmax over its own pixels
    logits = (torch.tensor([0.0, 1.0, 0.0]) - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor(
        [0.229, 0.224, 0.225]
    )
    expected = float(logits.clamp(min=0).softmax(0)[1])
    assert field["confidence"] == pytest.approx(expected, abs=1e-3)


def test_maps_explain_the_top_class_pixels(tmp_path: Path) -> None:
    # Red on the left three quarters, blue on the right: red is the top class, and both maps
    # of its pixels lie inside a box drawn around them.
    images = tmp_path / "images"
    images.mkdir()
    picture = Image.new("RGB", (64, 64), (255, 0, 0))
    picture.paste((0, 0, 255), (48, 0, 64, 64))
    picture.save(images / "left.png")
    (tmp_path / "boxes.csv").write_text("left.png,0,0,48,64\n")
    local.run_audit(
        images,
        tmp_path / "out",
        AuditConfig(model="colours", methods=("grad_cam", "saliency")),
        boxes=tmp_path / "boxes.csv",
        model=colour_segmenter(),
    )
    record = json.loads((tmp_path / "out/results.jsonl").read_text().splitlines()[0])
    assert record["predicted_name"] == "red"
    assert record["predictions"][0]["pixel_share"] == pytest.approx(0.75, abs=0.02)
    for name in ("grad_cam", "saliency"):
        assert record["maps"][name]["box_energy"] > 0.95, name
    assert "off_object" not in record["flags"]
    assert (tmp_path / "out/index.html").exists()


@pytest.mark.parametrize(
    ("config", "words"),
    [
        (AuditConfig(model="colours", methods=("score_cam",)), "score_cam"),
        (AuditConfig(model="colours", methods=("cam",)), "global-average-pooling"),
        (AuditConfig(model="colours", fragility=True), "fragility"),
    ],
)
def test_what_a_class_map_cannot_serve_is_refused_first(
    tmp_path: Path, config: AuditConfig, words: str
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    halves((255, 0, 0), (0, 0, 255), speck=False).save(images / "a.png")
    with pytest.raises(IncompatibleModelError, match=words):
        local.run_audit(images, tmp_path / "out", config, model=colour_segmenter())
    assert not (tmp_path / "out/results.jsonl").exists()


def test_cam_off_its_layer_is_refused_before_any_image(tmp_path: Path) -> None:
    # Not segmentation-specific: a model check that would fail every image fails the audit once.
    from tests.audit.tiny_model import synthetic_png, tiny_loaded

    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(synthetic_png(0))
    config = AuditConfig(model="tiny", methods=("grad_cam", "cam"), layer="0")
    with pytest.raises(IncompatibleModelError, match="defined only at the layer"):
        local.run_audit(images, tmp_path / "out", config, model=tiny_loaded())
    assert not (tmp_path / "out/results.jsonl").exists()
