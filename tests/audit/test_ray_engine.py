"""The same audit on a local Ray instance: Ray Data reads URIs, one model replica per actor,
results merged into the same store and report, equal to the local engine's."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cnnlens.audit import AuditConfig, run_audit
from cnnlens.audit.ray_engine import ship
from cnnlens.audit.ray_reader import Shipped, _Pending, read_with_ray_data
from cnnlens.audit.records import AuditItem
from cnnlens.models import LoadedModel
from tests.audit.tiny_model import synthetic_png, tiny_loaded, write_synthetic


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
            # the vectors came back with the rows: the same neighbours, map and index
            assert [n["name"] for n in remote["neighbors"]] == [
                n["name"] for n in here["neighbors"]
            ]
            assert remote["x"] == pytest.approx(here["x"], abs=1e-3)
    assert (tmp_path / "ray" / "features.faiss").is_file()
    assert "chelsea.png" in (tmp_path / "ray" / "index.html").read_text(encoding="utf-8")
    # the Ray run's store resumes like the local one: nothing left to do
    again = run_audit(photos, tmp_path / "ray", config, labels=labels, engine="ray")
    assert again.job.id == on_ray.job.id and again.processed == 0


def _file_items(folder: Path) -> list[AuditItem]:
    paths = sorted(folder.iterdir())
    return [AuditItem(i, p.name, f"file://{p}") for i, p in enumerate(paths)]


class _ReadHere:
    """read_each that records what it was asked to read, and reads it as the engine does."""

    def __init__(self) -> None:
        self.asked: list[int] = []
        self.readers = ThreadPoolExecutor(2)

    def __call__(self, batch: list[AuditItem]) -> Shipped:
        self.asked += [item.index for item in batch]
        return ship(batch, self.readers)


def test_uris_are_read_by_ray_data(tmp_path: Path, local_ray: None) -> None:
    folder = write_synthetic(tmp_path / "in", 9)
    items = _file_items(folder)
    items[4].mask_path = str(folder / "img000000.png")  # masks stay local: read here
    here = _ReadHere()
    batches = list(read_with_ray_data(items, 4, here))
    assert here.asked == []  # every image came through Ray Data
    shipped = [item for batch, failed in batches for item in batch if not failed]
    assert all(len(batch) <= 4 for batch, _ in batches)
    assert sorted(item.index for item in shipped) == list(range(9))  # each exactly once
    for item in shipped:
        assert item.path == "" and item.mask_path is None  # bytes travel, never paths
        assert item.data == (folder / f"img{item.index:06d}.png").read_bytes()
    assert next(it for it in shipped if it.index == 4).mask_data == synthetic_png(0)


def test_a_file_gone_after_listing_is_one_error_row(tmp_path: Path, local_ray: None) -> None:
    folder = write_synthetic(tmp_path / "in", 6)
    items = _file_items(folder)
    (folder / "img000002.png").unlink()
    here = _ReadHere()
    batches = list(read_with_ray_data(items, 4, here))
    shipped = sorted(item.index for batch, _ in batches for item in batch)
    failed = [outcome for _, errors in batches for outcome in errors]
    assert shipped == [0, 1, 3, 4, 5] and [f.index for f in failed] == [2]
    assert "img000002.png" in failed[0].record["error"] and str(tmp_path) not in str(failed)
    assert sorted(here.asked) == list(range(6))  # the chunk's read failed: read here instead


def test_local_paths_are_read_by_this_process(tmp_path: Path) -> None:
    folder = write_synthetic(tmp_path / "in", 5)
    items = [AuditItem(i, p.name, str(p)) for i, p in enumerate(sorted(folder.iterdir()))]
    here = _ReadHere()
    batches = list(read_with_ray_data(items, 2, here))  # no Ray needed: nothing goes to it
    assert here.asked == [0, 1, 2, 3, 4] and [len(b) for b, _ in batches] == [2, 2, 1]
    assert all(item.path == "" and item.data for batch, _ in batches for item in batch)


def test_ray_data_paths_find_their_items() -> None:
    items = [
        AuditItem(0, "p/a.png", "abfs://box@acct.dfs.core.windows.net/p/a.png"),
        AuditItem(1, "p/b.png", "abfs://box@acct.dfs.core.windows.net/p/b.png"),
    ]
    pending = _Pending(items)
    assert pending.take("box/p/b.png") is items[1]  # abfs names the container, not the host
    assert pending.take("box/p/b.png") is None  # taken once
    assert [item.index for item in pending.left()] == [0]
    hdfs = _Pending([AuditItem(0, "a.png", "hdfs://node:8020/data/a.png")])
    assert hdfs.take("/data/a.png") is not None and hdfs.left() == []
    s3 = _Pending([AuditItem(0, "x/a.png", "s3://bucket/x/a.png")])
    assert s3.take("bucket/x/a.png") is not None


def test_ray_audit_of_a_uri_prefix(tmp_path: Path, local_ray: None) -> None:
    folder = write_synthetic(tmp_path / "in", 12)
    (folder / "notes.txt").write_text("not an image")
    config = AuditConfig(model="tiny", batch_size=4)
    on_ray = run_audit(f"file://{folder}", tmp_path / "ray", config, engine="ray",
                       model=tiny_loaded())  # fmt: skip
    assert on_ray.job.status == "done" and on_ray.processed == 12 and on_ray.job.errors == 0
    here = run_audit(folder, tmp_path / "here", config, model=tiny_loaded())
    remote, local = _records(tmp_path / "ray"), _records(tmp_path / "here")
    assert [r["name"] for r in remote] == [f"img{i:06d}.png" for i in range(12)]
    for on_cluster, in_process in zip(remote, local, strict=True):
        assert on_cluster["predicted"] == in_process["predicted"]
        assert on_cluster["confidence"] == pytest.approx(in_process["confidence"], abs=1e-5)
        overlay = tmp_path / "ray" / on_cluster["overlays"]["grad_cam"]
        assert overlay.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # written by this process
    assert here.job.total == on_ray.job.total


# The driver: a Ray audit that stops answering once `hold_at` images are recorded (so that the
# kill lands at a known point), then is SIGKILLed by the test.
_DRIVER = """
import sys, time
from pathlib import Path
from cnnlens.audit import AuditConfig, run_audit
from tests.audit.tiny_model import tiny_loaded
source, out, hold_at = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
def hold(job):
    while job.done >= hold_at:
        time.sleep(1)
run_audit(source, out, AuditConfig(model="tiny", batch_size=2), engine="ray",
          model=tiny_loaded(), on_progress=hold)
"""


def _recorded(store: Path) -> list[tuple[int, int]]:
    try:
        with sqlite3.connect(store, timeout=5) as db:
            return db.execute(
                "SELECT idx, COUNT(*) FROM items WHERE status != 'pending' GROUP BY idx"
            ).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_driver_killed_then_rerun_resumes(tmp_path: Path, local_ray: None) -> None:
    count, hold_at = 40, 10
    source = write_synthetic(tmp_path / "in", count)
    out = tmp_path / "out"
    driver = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, str(source), str(out), str(hold_at)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240  # a bound for a loaded machine, not a timing test
        while len(_recorded(out / "audit.sqlite")) < hold_at and time.monotonic() < deadline:
            assert driver.poll() is None, "the driver ended before it was killed"
            time.sleep(0.05)
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started
    finally:
        driver.wait(timeout=60)
    before = len(_recorded(out / "audit.sqlite"))
    assert hold_at <= before < count
    assert not (out / "results.jsonl").exists()  # it never finished

    rerun = run_audit(source, out, AuditConfig(model="tiny", batch_size=2), engine="ray",
                      model=tiny_loaded())  # fmt: skip
    assert rerun.job.status == "done" and rerun.processed == count - before
    recorded = _recorded(out / "audit.sqlite")
    assert [idx for idx, _ in recorded] == list(range(count))
    assert all(times == 1 for _, times in recorded)  # every image exactly once
    names = [r["name"] for r in _records(out)]
    assert names == [f"img{i:06d}.png" for i in range(count)]
