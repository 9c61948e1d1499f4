"""Progress bars for compare and the audit's fragility ladder: shown when asked or watched,
never under -q or into a pipe; -q also silences notes such as a skipped Parquet export."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cnnlens.cli import main
from cnnlens.compare import CompareOptions, compare
from cnnlens.compare.engine import compare_image, steps_per_image
from cnnlens.models import LoadedModel
from cnnlens.progress import watched


def test_compare_ticks_once_per_unit_it_announces(
    default_model: LoadedModel, chelsea: Image.Image
) -> None:
    options = CompareOptions(
        steps=2, stages=2, scores=["deletion", "insertion", "randomization"],
        random_baseline=True,
    )  # fmt: skip
    ticks: list[int] = []
    compare_image(
        default_model, chelsea, ["grad_cam", "saliency"], None, None, {}, options,
        tick=ticks.append,
    )  # fmt: skip
    # the maps, 3 maps' curves (two methods and the random one), 2 randomized stages
    assert sum(ticks) == steps_per_image(2, options) == 1 + 3 + 2
    assert steps_per_image(2, CompareOptions(scores=[])) == 1


def test_compare_bar_when_asked_none_into_a_pipe(
    default_model: LoadedModel, chelsea: Image.Image, capsys: pytest.CaptureFixture[str]
) -> None:
    options = CompareOptions(steps=2, scores=["deletion"])
    compare(default_model, [chelsea, chelsea], ["grad_cam"], options=options, progress=True)
    shown = capsys.readouterr().err
    assert "comparing" in shown and "4/4" in shown  # 2 images x (maps + curves)
    assert not watched(None)  # pytest's captured stderr is no terminal, and no notebook here
    compare(default_model, chelsea, ["grad_cam"], options=options)
    assert capsys.readouterr().err == ""


def test_fragility_has_a_bar_of_its_rungs(
    default_model: LoadedModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cnnlens.audit import AuditConfig, run_audit

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(photos / name)
    config = AuditConfig(fragility=True, epsilons=(1.0, 2.0), pgd_steps=1)
    run_audit(photos, tmp_path / "out", config, model=default_model, progress=True)
    shown = capsys.readouterr().err
    assert "auditing" in shown and "2/2" in shown
    assert "fragility" in shown and "4/4" in shown  # 2 images x 2 rungs, run or skipped


def test_quiet_cli_prints_no_bar_and_no_note(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import cnnlens.audit.parquet as parquet

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (40, 30), (200, 120, 40)).save(photos / "a.png")
    real = importlib.util.find_spec

    def without_pyarrow(name: str, *args: Any) -> Any:
        return None if name == "pyarrow" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_pyarrow)
    monkeypatch.setattr(parquet, "_warned", False)
    out = tmp_path / "audit"
    assert main(["audit", str(photos), "--out", str(out), "-q", "--weights", "none"]) == 0
    assert not (out / "results.parquet").exists()
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == "", captured
    assert main(["compare", str(photos / "a.png"), "--out", str(tmp_path / "c"), "-q",
                 "--weights", "none", "--scores", "none"]) == 0  # fmt: skip
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == "", captured
