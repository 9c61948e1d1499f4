"""Per-image analysis: the fragility ladder agrees with direct PGD runs; masks localize."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlens.audit import AuditConfig
from cnnlens.audit.analyze import AuditAnalyzer
from cnnlens.audit.inputs import AuditItem
from cnnlens.methods.run import run_methods
from cnnlens.models import LoadedModel


def test_fragility_is_the_smallest_flipping_epsilon(
    tmp_path: Path, chelsea: Image.Image, default_model: LoadedModel
) -> None:
    path = tmp_path / "chelsea.png"
    chelsea.resize((160, 106)).save(path)
    ladder = (0.05, 0.25, 1.0, 4.0)
    config = AuditConfig(fragility=True, epsilons=ladder, pgd_steps=2, fragile_at=1.0)
    (outcome,) = AuditAnalyzer(default_model, config)([AuditItem(0, "chelsea.png", str(path))])
    record = outcome.record
    x = default_model.preprocessing(Image.open(path))
    flips = []
    for epsilon in ladder:
        params = {
            "epsilon": epsilon,
            "step_size": 2.5 * epsilon / 2,
            "steps": 2,
            "stop_on_success": True,
        }
        result = run_methods(
            default_model, x, [("adversarial", params)], target=record["predicted"]
        )
        flips.append(bool(result.outputs["adversarial"].extras["success"][0]))
    expected = next((eps for eps, flipped in zip(ladder, flips, strict=True) if flipped), None)
    assert record["fragility_tested"] is True
    assert record["fragile_epsilon"] == expected
    assert ("fragile" in record["flags"]) == (expected is not None and expected <= 1.0)


def test_mask_localization(
    tmp_path: Path, chelsea: Image.Image, default_model: LoadedModel
) -> None:
    image = chelsea.resize((128, 96))
    image.save(tmp_path / "cat.png")
    everything = np.full((96, 128), 255, dtype=np.uint8)
    Image.fromarray(everything).save(tmp_path / "all.png")
    corner = np.zeros((48, 64), dtype=np.uint8)  # half size: resized onto the image
    corner[:2, :2] = 255
    Image.fromarray(corner).save(tmp_path / "corner.png")
    analyzer = AuditAnalyzer(default_model, AuditConfig(pointing_tolerance=0, min_box_energy=0.5))
    full, tiny = analyzer(
        [
            AuditItem(0, "cat.png", str(tmp_path / "cat.png"), mask_path=str(tmp_path / "all.png")),
            AuditItem(
                1, "cat.png", str(tmp_path / "cat.png"), mask_path=str(tmp_path / "corner.png")
            ),
        ]
    )
    assert full.record["maps"]["grad_cam"]["box_energy"] == pytest.approx(1.0)
    assert full.record["maps"]["grad_cam"]["pointing_hit"] is True
    assert "off_object" not in full.record["flags"]
    assert tiny.record["maps"]["grad_cam"]["box_energy"] < 0.05  # 16 of 12288 pixels
    assert "off_object" in tiny.record["flags"]
    assert full.record["predicted"] == tiny.record["predicted"]
