"""A `cnnlens audit` process killed (SIGKILL) midway: the rerun analyzes only what is left."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import cnnlens.audit.analyze as analyze_module
from cnnlens.audit import AuditConfig, run_audit
from cnnlens.models import LoadedModel

IMAGES = 8


def _done(database: Path) -> int:
    try:
        with sqlite3.connect(database, timeout=5) as connection:
            row = connection.execute(
                "SELECT COUNT(*) FROM items WHERE status != 'pending'"
            ).fetchone()
    except sqlite3.OperationalError:  # not created yet
        return 0
    return int(row[0])


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_killed_process_resumes(
    tmp_path: Path,
    chelsea: Image.Image,
    default_model: LoadedModel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(IMAGES):
        chelsea.resize((120 + 8 * i, 80 + 4 * i)).save(photos / f"cat{i}.png")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "cnnlens", "audit", str(photos), "--out", str(out),
               "--batch-size", "1", "--quiet"]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while _done(out / "audit.sqlite") < 2 and time.monotonic() < deadline:
            assert process.poll() is None, "the audit ended before it could be killed"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    finished_before = _done(out / "audit.sqlite")
    assert 2 <= finished_before < IMAGES
    assert not (out / "results.jsonl").exists()

    analyzed: list[int] = []
    real_run_methods = analyze_module.run_methods

    def counting(model: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
        analyzed.append(x.shape[0])
        return real_run_methods(model, x, *args, **kwargs)

    monkeypatch.setattr(analyze_module, "run_methods", counting)
    run = run_audit(photos, out, AuditConfig(batch_size=1), model=default_model)
    assert run.job.status == "done" and run.processed == IMAGES - finished_before
    assert sum(analyzed) == IMAGES - finished_before
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["name"] for r in records] == [f"cat{i}.png" for i in range(IMAGES)]
    assert all(r["status"] == "ok" and r["predicted"] == 285 for r in records)
