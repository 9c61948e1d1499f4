"""The store alone: torch-free, one file name (an older out dir's name still read), each image
recorded once even when a batch is delivered twice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cnnlens.audit.records import AuditItem, ImageOutcome
from cnnlens.audit.store import LEGACY_STORE_NAME, STORE_NAME, AuditStore, store_path


def test_store_imports_no_torch() -> None:
    code = (
        "import sys, cnnlens.audit.store, cnnlens.audit.config, cnnlens.audit.sources;"
        "print(sorted(m for m in ('torch', 'torchvision', 'timm') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_store_path_keeps_reading_the_older_name(tmp_path: Path) -> None:
    assert store_path(tmp_path) == tmp_path / STORE_NAME
    (tmp_path / LEGACY_STORE_NAME).write_bytes(b"")
    assert store_path(tmp_path) == tmp_path / LEGACY_STORE_NAME
    (tmp_path / STORE_NAME).write_bytes(b"")
    assert store_path(tmp_path) == tmp_path / STORE_NAME


def _outcome(index: int, confidence: float) -> ImageOutcome:
    return ImageOutcome(index, {"index": index, "name": f"{index}.png", "status": "ok",
                                "confidence": confidence, "flags": []})  # fmt: skip


def test_a_batch_delivered_twice_is_recorded_once(tmp_path: Path) -> None:
    store = AuditStore(tmp_path / STORE_NAME)
    items = [AuditItem(i, f"{i}.png", f"/x/{i}.png") for i in range(5)]
    store.create_job("j", source="s", out_dir=str(tmp_path), signature="d", config={}, items=items)
    assert [it.index for it in store.iter_pending("j", page=2)] == [0, 1, 2, 3, 4]
    assert store.save_outcomes("j", [_outcome(0, 0.9), _outcome(1, 0.8)]) == 2
    assert store.save_outcomes("j", [_outcome(1, 0.1), _outcome(2, 0.7)]) == 1
    records = store.records("j")
    assert [r["index"] for r in records] == [0, 1, 2]
    assert records[1]["confidence"] == 0.8  # the first delivery stays
    assert [it.index for it in store.iter_pending("j", page=1)] == [3, 4]
    job = store.job("j")
    assert job is not None and job.done == 3
    store.close()


def test_a_file_name_that_is_not_utf8_is_stored_and_read_back(tmp_path: Path) -> None:
    # On Linux a name's undecodable bytes arrive as surrogates, which SQLite's text refuses.
    path = os.fsdecode(os.fsencode(str(tmp_path)) + b"/\xff\xfe.jpg")
    store = AuditStore(tmp_path / STORE_NAME)
    items = [AuditItem(0, "\\xff\\xfe.jpg", path, mask_path=path)]
    store.create_job("j", source="s", out_dir=str(tmp_path), signature="d", config={}, items=items)
    (pending,) = store.iter_pending("j", page=1)
    assert pending.path == path and pending.mask_path == path
    assert pending.name == "\\xff\\xfe.jpg"
    store.close()
