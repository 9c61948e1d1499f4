"""Per-image analysis: the fragility ladder agrees with saved adversarial images; masks localize."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlens.audit import AuditConfig
from cnnlens.audit.analyze import AuditAnalyzer
from cnnlens.audit.inputs import AuditItem
from cnnlens.imageio import decode_image
from cnnlens.methods.adversarial_image import adversarial_image
from cnnlens.models import LoadedModel


def test_fragility_reports_only_flips_the_saved_image_reproduces(
    tmp_path: Path, chelsea: Image.Image, default_model: LoadedModel
) -> None:
    path = tmp_path / "chelsea.png"
    chelsea.resize((160, 106)).save(path)
    ladder = (1.0, 2.0, 4.0)
    config = AuditConfig(fragility=True, epsilons=ladder, pgd_steps=2, fragile_at=2.0)
    (outcome,) = AuditAnalyzer(default_model, config)([AuditItem(0, "chelsea.png", str(path))])
    record = outcome.record
    stored = Image.open(path)
    flips = []
    for epsilon in ladder:
        params = {
            "epsilon": epsilon,
            "step_size": 2.5 * epsilon / 2,
            "steps": 2,
            "stop_on_success": True,
        }
        result = adversarial_image(default_model, stored, params, target=record["predicted"])
        # The flip is the saved 8-bit image's, at the photo's size, uploaded again.
        assert result.image.size == (160, 106)
        with torch.no_grad():
            logits = default_model.module(default_model.preprocessing(decode_image(result.png)))
        assert int(logits.argmax()) == result.adversarial.index
        flips.append((result.success, result.adversarial.index))
    expected = next((eps for eps, (flip, _) in zip(ladder, flips, strict=True) if flip), None)
    assert expected is not None  # the test is about a real flip
    assert record["fragility_tested"] is True
    assert record["fragile_epsilon"] == expected
    assert record["fragile_class"] == flips[ladder.index(expected)][1] != record["predicted"]
    assert record["fragile_class_name"] == default_model.label_of(record["fragile_class"])
    assert ("fragile" in record["flags"]) == (expected <= 2.0)


@pytest.mark.parametrize("epsilons", [(0.25, 1.0), (1.5,), (0.0,)])
def test_ladder_below_one_level_or_fractional_is_refused(epsilons: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="whole 8-bit levels"):
        AuditConfig(fragility=True, epsilons=epsilons)


def test_default_ladder_starts_at_one_level_and_flags_at_two() -> None:
    config = AuditConfig()
    assert config.epsilons[0] == 1.0 and config.fragile_at == 2.0


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
