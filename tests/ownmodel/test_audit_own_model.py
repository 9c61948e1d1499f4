"""Audits of a user's own model: labels in its own names, and label sets for sigmoid heads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

import cnnlens
from cnnlens.audit import local
from cnnlens.audit.analyze import AuditAnalyzer
from cnnlens.audit.config import AuditConfig
from cnnlens.audit.inputs import Annotations, AuditItem
from tests.ownmodel.conftest import COLOURS, SIZE, colour_images


def test_audit_judges_own_labels(tmp_path: Path, colour_checkpoint: tuple[Path, Path]) -> None:
    weights, labels = colour_checkpoint
    model = cnnlens.load_model(
        "torchvision:resnet18",
        weights=weights,
        num_classes=5,
        labels=labels,
        preprocessing={"input_size": SIZE},
    )
    images = tmp_path / "images"
    images.mkdir()
    rows = []
    names = list(COLOURS)
    for seed, (name, rgb) in enumerate(COLOURS.items()):
        colour_images(rgb, 1, 300 + seed)[0].save(images / f"{name}.png")
        claimed = name if seed % 2 == 0 else names[(seed + 1) % 5]  # odd rows labelled wrong
        rows.append(f"{name}.png,{claimed}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    local.run_audit(
        images, tmp_path / "out", AuditConfig(), labels=tmp_path / "labels.csv", model=model
    )
    records = [
        json.loads(line)
        for line in (tmp_path / "out/results.jsonl").read_text().split("\n")
        if line
    ]
    by_name = {Path(r["name"]).stem: r for r in records}
    for seed, name in enumerate(names):
        assert by_name[name]["predicted_name"] == name
        assert by_name[name]["correct"] is (seed % 2 == 0)


class _FixedLogits(nn.Module):
    """A tiny conv net whose logits are set by a final bias (answers known)."""

    def __init__(self, bias: list[float]) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, len(bias))
        with torch.no_grad():
            self.fc.weight.mul_(1e-3)
            self.fc.bias.copy_(torch.tensor(bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def test_sigmoid_model_predictions_and_label_sets(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = cnnlens.wrap(
        _FixedLogits([3.0, -2.0, 1.5]).eval(),
        labels=["scratch", "dent", "rust"],
        head="sigmoid",
        preprocessing={"input_size": 32},
    )
    picture = Image.new("RGB", (40, 40), (120, 90, 60))
    result = cnnlens.explain(model, picture, ["saliency"], top_k=3)
    by_label = {p.label: p.probability for p in result.predictions}
    assert by_label["scratch"] == pytest.approx(float(torch.sigmoid(torch.tensor(3.0))), abs=2e-3)
    assert by_label["rust"] == pytest.approx(float(torch.sigmoid(torch.tensor(1.5))), abs=2e-3)
    assert sum(by_label.values()) > 1.5  # independent, not one distribution
    picture.save(tmp_path / "part.png")
    from cnnlens.audit.inputs import build_items

    good, partial = build_items(
        [("a.png", tmp_path / "part.png"), ("b.png", tmp_path / "part.png")],
        Annotations(labels={"a.png": "scratch;rust", "b.png": "scratch"}),
        model.categories,
        3,
    )
    assert good.labels == (0, 2)
    outcomes = AuditAnalyzer(model, AuditConfig(methods=("saliency",)))([good, partial])
    assert [o.record["correct"] for o in outcomes] == [True, False]
    assert isinstance(good, AuditItem)
