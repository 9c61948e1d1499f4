"""The same audit on a local Ray instance: Ray Data, one model replica per actor, results
merged into the same store and report, equal to the local engine's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cnnlens.audit import AuditConfig, run_audit
from cnnlens.models import LoadedModel


@pytest.fixture
def local_ray(tmp_path: Path) -> Iterator[None]:
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=1,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}},
    )
    try:
        yield
    finally:
        ray.shutdown()


def _records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_ray_audit_matches_local(
    photos: Path, tmp_path: Path, default_model: LoadedModel, local_ray: None
) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("chelsea.png,285\ncoffee.png,967\nastronaut.png,1\n", encoding="utf-8")
    config = AuditConfig(batch_size=2)
    on_ray = run_audit(photos, tmp_path / "ray", config, labels=labels, engine="ray")
    assert on_ray.job.status == "done" and on_ray.processed == 4
    run_audit(photos, tmp_path / "local", config, labels=labels, model=default_model)
    ray_records, local_records = _records(tmp_path / "ray"), _records(tmp_path / "local")
    assert [r["name"] for r in ray_records] == [r["name"] for r in local_records]
    for remote, here in zip(ray_records, local_records, strict=True):
        assert remote["status"] == here["status"]
        assert remote.get("predicted") == here.get("predicted")
        assert remote.get("correct") == here.get("correct")
        assert remote["flags"] == here["flags"]
        if here["status"] == "ok":
            assert remote["confidence"] == pytest.approx(here["confidence"], abs=1e-4)
            assert (tmp_path / "ray" / remote["overlays"]["grad_cam"]).is_file()
    assert "chelsea.png" in (tmp_path / "ray" / "index.html").read_text(encoding="utf-8")
    # the Ray run's store resumes like the local one: nothing left to do
    again = run_audit(photos, tmp_path / "ray", config, labels=labels, engine="ray")
    assert again.job.id == on_ray.job.id and again.processed == 0
