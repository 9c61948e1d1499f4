"""A killed audit resumes: finished images are not analyzed again and nothing is lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import cnnlens.audit.analyze as analyze_module
from cnnlens.audit import AuditConfig, JobInfo, run_audit
from cnnlens.models import LoadedModel


class Killed(Exception):
    pass


def test_killed_audit_resumes_without_redoing(
    photos: Path, tmp_path: Path, default_model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    analyzed: list[int] = []  # images in each model call
    real_run_methods = analyze_module.run_methods

    def counting(model: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
        analyzed.append(x.shape[0])
        return real_run_methods(model, x, *args, **kwargs)

    monkeypatch.setattr(analyze_module, "run_methods", counting)
    config = AuditConfig(batch_size=1)
    out = tmp_path / "out"

    def kill_after_two(job: JobInfo) -> None:
        if job.done >= 2:
            raise Killed

    with pytest.raises(Killed):
        run_audit(photos, out, config, model=default_model, on_progress=kill_after_two)
    # sorted names: astronaut, broken (no model call), chelsea, coffee
    assert sum(analyzed) == 1
    assert not (out / "results.jsonl").exists()  # the report comes at the end

    analyzed.clear()
    run = run_audit(photos, out, config, model=default_model)
    assert run.job.status == "done" and run.processed == 2
    assert sum(analyzed) == 2  # chelsea and coffee only
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["name"] for r in records] == [
        "astronaut.png",
        "broken.png",
        "chelsea.png",
        "coffee.png",
    ]
    assert [r["status"] for r in records] == ["ok", "error", "ok", "ok"]

    analyzed.clear()
    again = run_audit(photos, out, config, model=default_model)
    assert again.job.id == run.job.id and again.processed == 0 and analyzed == []

    fresh = run_audit(photos, out, config, model=default_model, resume=False)
    assert fresh.job.id != run.job.id and sum(analyzed) == 3
    fresh_records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    for first, second in zip(records, fresh_records, strict=True):
        assert first.get("predicted") == second.get("predicted")
        assert first.get("confidence") == pytest.approx(second.get("confidence"), abs=1e-5)


def test_a_failing_image_becomes_an_error_row(
    photos: Path, tmp_path: Path, default_model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_run_methods = analyze_module.run_methods

    def fails_with_coffee(model: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
        # stands for a method that breaks on one image: here, any batch holding coffee
        if any(abs(float(row.mean()) - coffee_mean) < 1e-6 for row in x):
            raise RuntimeError("method exploded")
        return real_run_methods(model, x, *args, **kwargs)

    from PIL import Image

    coffee_mean = float(default_model.preprocessing(Image.open(photos / "coffee.png")).mean())
    monkeypatch.setattr(analyze_module, "run_methods", fails_with_coffee)
    run = run_audit(photos, tmp_path / "out", AuditConfig(batch_size=4), model=default_model)
    assert run.job.status == "done"
    records = {r["name"]: r for r in map(json.loads, (tmp_path / "out" / "results.jsonl").open())}
    assert records["coffee.png"]["status"] == "error"
    assert "method exploded" in records["coffee.png"]["error"]
    assert records["chelsea.png"]["status"] == "ok" and records["astronaut.png"]["status"] == "ok"
