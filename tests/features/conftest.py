"""One audit of scikit-image crops with the default model, shared by the findings tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cnnlens.models.loaded import LoadedModel
from tests.features.photos import PhotoSet, write_photo_set


@dataclass(frozen=True)
class PhotoAudit:
    photos: PhotoSet
    out: Path
    records: dict[str, dict[str, Any]]  # by name
    summary: dict[str, Any]  # summary.json's "features"


@pytest.fixture(scope="session")
def photo_audit(
    default_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PhotoAudit]:
    from cnnlens.audit import AuditConfig, run_audit

    root = tmp_path_factory.mktemp("photo-audit")
    photos = write_photo_set(root / "photos")
    out = root / "out"
    run = run_audit(photos.folder, out, AuditConfig(), labels=photos.labels, model=default_model)
    assert run.job.status == "done"
    lines = (out / "results.jsonl").read_text("utf-8").splitlines()
    records = {record["name"]: record for record in map(json.loads, lines)}
    summary = json.loads((out / "summary.json").read_text("utf-8"))["summary"]["features"]
    yield PhotoAudit(photos, out, records, summary)
