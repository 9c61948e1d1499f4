"""The outputs are written streaming: summaries, class-mean maps and every export come from a
paged read of the store, so that the writer's peak memory does not grow with the image count;
the JSONL, CSV and Parquet exports carry every row."""

from __future__ import annotations

import csv
import json
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnnlens.audit import export
from cnnlens.audit.export import CSV, JSONL, REPORT, SUMMARY, write_outputs
from cnnlens.audit.parquet import PARQUET, ROW_GROUP
from cnnlens.audit.records import MEAN_MAP_SIDE, AuditItem, ImageOutcome
from cnnlens.audit.store import AuditStore
from cnnlens.audit.summary import class_mean_maps, summarize


def _record(index: int) -> dict[str, Any]:
    label = index % 5
    predicted = label if index % 3 else (label + 1) % 5
    flags = [] if predicted == label else ["misclassified"]
    return {
        "index": index, "name": f"img{index:06d}.png", "status": "ok", "error": None,
        "label": label, "label_name": f"class{label}", "predicted": predicted,
        "predicted_name": f"class{predicted}", "confidence": ((index * 37) % 100) / 100,
        "correct": predicted == label, "flags": flags, "has_region": False,
        "maps": {"grad_cam": {"degenerate": False, "box_energy": None, "pointing_hit": None}},
        "predictions": [{"index": predicted, "label": f"class{predicted}", "probability": 0.5}],
        "overlays": {"grad_cam": f"overlays/{index:05d}_img_grad_cam.png"},
        "fragility_tested": False, "fragile_epsilon": None,
    }  # fmt: skip


def _mean_map(index: int) -> bytes:
    grid = np.full((MEAN_MAP_SIDE, MEAN_MAP_SIDE), (index % 11) / 10, np.float16)
    return grid.tobytes()


def _store(folder: Path, count: int) -> AuditStore:
    store = AuditStore(folder / "audit.sqlite")
    items = [AuditItem(i, f"img{i:06d}.png", "") for i in range(count)]
    store.create_job("j", source="s", out_dir=str(folder), signature="d",
                     config={"methods": ["grad_cam"]}, items=items)  # fmt: skip
    for start in range(0, count, 1000):
        store.save_outcomes(
            "j",
            [
                ImageOutcome(i, _record(i), thumbnail=bytes(600),
                             overlay_thumbnails={"grad_cam": bytes(600)}, mean_map=_mean_map(i))
                for i in range(start, min(count, start + 1000))
            ],
        )  # fmt: skip
    return store


def _peak_of_writing(folder: Path, count: int) -> int:
    store = _store(folder, count)
    write_outputs(store, "j", folder)  # imports and caches first, so that only the writing counts
    tracemalloc.start()
    try:
        write_outputs(store, "j", folder)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        store.close()


def test_writer_peak_memory_does_not_grow_with_the_images(tmp_path: Path) -> None:
    small = _peak_of_writing(tmp_path / "small", 2_000)
    large = _peak_of_writing(tmp_path / "large", 20_000)
    # Ten times the images; an in-memory writer would need about ten times the memory.
    assert large < 2 * small, (small, large)
    lines = (tmp_path / "large" / JSONL).read_text().splitlines()
    assert len(lines) == 20_000 and json.loads(lines[-1])["index"] == 19_999


def test_streamed_summary_and_exports_match_the_records(tmp_path: Path) -> None:
    count = 9_000  # more than two Parquet row groups
    store = _store(tmp_path, count)
    paths = write_outputs(store, "j", tmp_path)
    records = [record.to_json() for record in store.records("j")]  # the rows as stored
    written = json.loads(paths[SUMMARY].read_text())["summary"]
    assert written == json.loads(json.dumps(summarize(records)))
    assert written["accuracy"] == pytest.approx(sum(r["correct"] for r in records) / count)
    rows = list(csv.DictReader(paths[CSV].open(newline="")))
    assert [int(r["index"]) for r in rows] == list(range(count))
    assert [json.loads(line) for line in paths[JSONL].read_text().splitlines()] == records

    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(paths[PARQUET])
    assert parquet.metadata.num_rows == count
    assert parquet.metadata.num_row_groups == -(-count // ROW_GROUP)
    table = parquet.read()
    assert table.column("index").to_pylist() == list(range(count))
    assert table.column("confidence").to_pylist() == [r["confidence"] for r in records]
    assert table.column("flags").to_pylist() == [r["flags"] for r in records]
    assert json.loads(table.column("maps")[7].as_py()) == records[7]["maps"]

    html = paths[REPORT].read_text()
    means = class_mean_maps(records, store.mean_maps("j"))
    for entry in means:  # the same classes, counts as the in-memory means
        assert f"{entry['name']} ({entry['n']})" in html
    # class0 is predicted for labels 0 (kept) and 4 (shifted): its mean map by hand
    predicted0 = [i for i in range(count) if records[i]["predicted"] == 0]
    expected = np.mean([float(np.float16((i % 11) / 10)) for i in predicted0])
    got = next(e for e in means if e["class"] == 0)["map"]
    assert got[0, 0] == pytest.approx(float(expected), rel=1e-5)
    # flagged first, then input order: the misclassified rows lead the table
    data = html[html.index("<script id='rows' type='application/json'>") :]
    entries = json.loads(data[data.index(">") + 1 : data.index("</script>")])
    assert len(entries) == count
    firsts = [int(e["v"][0]) for e in entries]
    flagged = [r["index"] for r in records if r["flags"]]
    assert firsts == flagged + [r["index"] for r in records if not r["flags"]]
    store.close()


def test_formula_cells_are_neutralized_in_the_streamed_exports(tmp_path: Path) -> None:
    store = AuditStore(tmp_path / "audit.sqlite")
    item = AuditItem(0, "=cmd.png", "")
    store.create_job("j", source="s", out_dir=str(tmp_path), signature="d",
                     config={"methods": ["grad_cam"]}, items=[item])  # fmt: skip
    store.save_outcomes("j", [ImageOutcome(0, {**_record(0), "name": "=cmd.png"})])
    paths = write_outputs(store, "j", tmp_path)
    assert next(csv.DictReader(paths[CSV].open(newline="")))["name"] == "'=cmd.png"
    assert json.loads(paths[JSONL].read_text())["name"] == "'=cmd.png"
    store.close()


def test_without_pyarrow_the_parquet_file_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "parquet_available", lambda: False)
    store = _store(tmp_path, 10)
    paths = write_outputs(store, "j", tmp_path)
    assert PARQUET not in paths and not (tmp_path / PARQUET).exists()
    assert len(paths[JSONL].read_text().splitlines()) == 10
    store.close()
