"""An audit of a detector against labelled boxes: matched, missed and false detections per
image at IoU 0.5, precision and recall, flags, and the boxes on the thumbnails."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlens.audit import run_audit
from cnnlens.audit.config import AuditConfig
from cnnlens.audit.inputs import Annotations, AuditInputError
from cnnlens.audit.matching import match_detections
from cnnlens.models import LoadedModel
from tests.detection.detectors import square_image

LABELS_CSV = """filename,label,x0,y0,x1,y1
a.png,red,16,24,48,56
a.png,blue,72,80,104,112
b.png,red,80,80,112,112
c.png,green,0,0,10,10
d.png,blue,40,40,72,72
"""


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    square_image([("red", 16, 24), ("blue", 72, 80)]).save(folder / "a.png")  # both found
    square_image([("green", 40, 40)], seed=1).save(folder / "b.png")  # red missed, green false
    square_image([("red", 64, 16)], seed=2).save(folder / "c.png")  # green missed, red false
    square_image([("blue", 40, 40)], seed=3).save(folder / "d.png")  # found
    (tmp_path / "labels.csv").write_text(LABELS_CSV)
    return folder


def test_matching_by_hand() -> None:
    detections = [(0, 0, 10, 10), (0, 0, 10, 9), (50, 50, 60, 60)]  # best score first
    matching = match_detections(detections, [1, 1, 2], [(0, 0, 10, 10), (50, 50, 60, 70)], [1, 2])
    # The second detection overlaps the first object too, but it is taken: a false detection;
    # the third overlaps the second object with IoU 0.5, enough.
    assert matching.matched == [(0, 0, 1.0), (2, 1, 0.5)]
    assert matching.false == [1] and matching.missed == []
    assert matching.precision == pytest.approx(2 / 3) and matching.recall == 1.0
    by_label = match_detections(detections[:1], [2], [(0, 0, 10, 10)], [1])
    assert by_label.matched == [] and by_label.false == [0] and by_label.missed == [0]
    assert match_detections([], [], [], None).precision is None


def test_labels_csv_with_boxes(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(LABELS_CSV)
    annotations = Annotations.read(path, None, None)
    assert annotations.labels["a.png"] == "red;blue"
    assert annotations.boxes["a.png"] == [(16.0, 24.0, 48.0, 56.0), (72.0, 80.0, 104.0, 112.0)]
    path.write_text("a.png,red,10,10,5,20\n")
    with pytest.raises(AuditInputError, match="x0 < x1"):
        Annotations.read(path, None, None)


def test_an_audit_gives_the_right_precision_and_recall(
    squares: LoadedModel, photos: Path, tmp_path: Path
) -> None:
    config = AuditConfig(model="squares", methods=("grad_cam", "saliency"), min_box_energy=0.5)
    out = tmp_path / "out"
    run = run_audit(photos, out, config, labels=tmp_path / "labels.csv", model=squares)
    assert run.job.status == "done" and run.processed == 4
    records = {r["name"]: r for r in map(json.loads, (out / "results.jsonl").open())}
    expected = {  # matched, missed, false, precision, recall, flags
        "a.png": (2, 0, 0, 1.0, 1.0, []),
        "b.png": (0, 1, 1, 0.0, 0.0, ["missed_object", "false_detection"]),
        "c.png": (0, 1, 1, 0.0, 0.0, ["missed_object", "false_detection"]),
        "d.png": (1, 0, 0, 1.0, 1.0, []),
    }
    for name, (matched, missed, false, precision, recall, flags) in expected.items():
        detection = records[name]["detection"]
        assert (detection["matched"], detection["missed"], detection["false"]) == (
            matched, missed, false
        )  # fmt: skip
        assert (detection["precision"], detection["recall"]) == (precision, recall)
        assert records[name]["flags"] == flags
        assert records[name]["correct"] is (not flags)
        for method in ("grad_cam", "saliency"):  # each detection's map lies on its box
            entry = records[name]["maps"][method]
            assert all(not d["off_object"] for d in entry["detections"])
    assert records["a.png"]["predictions"][0]["box"] == [16.0, 24.0, 48.0, 56.0]
    summary = json.loads((out / "summary.json").read_text())["summary"]
    assert summary["detection"] == {
        "objects": 5, "detections": 5, "matched": 3, "missed": 2, "false": 2,
        "precision": 3 / 5, "recall": 3 / 5,
    }  # fmt: skip
    assert summary["flag_counts"]["missed_object"] == 2
    report = (out / "index.html").read_text()
    assert "precision" in report and "60.0%" in report


def test_the_thumbnails_show_the_boxes(squares: LoadedModel, photos: Path, tmp_path: Path) -> None:
    from cnnlens.audit.store import AuditStore, store_path

    out = tmp_path / "out"
    run_audit(
        photos, out, AuditConfig(model="squares"), labels=tmp_path / "labels.csv", model=squares
    )
    store = AuditStore(store_path(out))
    try:
        job = store.jobs()[0]
        thumbnails = store.thumbnails(job.id)
    finally:
        store.close()
    # b.png: the missed red object's box in green, the false green detection's in yellow.
    picture = np.asarray(Image.open(io.BytesIO(thumbnails[1])).convert("RGB")).astype(int)
    assert picture.shape[:2] == (128, 128)
    green_edge = picture[96, 80]  # the left edge of (80, 80, 112, 112)
    assert green_edge[1] > 150 and green_edge[0] < 120 and green_edge[2] < 120
    yellow_edge = picture[56, 40]  # the left edge of the detection (40, 40, 72, 72)
    assert yellow_edge[0] > 180 and yellow_edge[1] > 150 and yellow_edge[2] < 160  # (JPEG)


def test_the_fragility_ladder_works_on_the_box_score(
    squares: LoadedModel, photos: Path, tmp_path: Path
) -> None:
    config = AuditConfig(model="squares", fragility=True, epsilons=(8, 128), fragile_at=8)
    out = tmp_path / "out"
    run_audit(photos, out, config, labels=tmp_path / "labels.csv", model=squares)
    records = {r["name"]: r for r in map(json.loads, (out / "results.jsonl").open())}
    # A pure colour square loses its detection once every pixel may move by 128 levels:
    # its colour evidence falls below the detector's threshold; 8 levels are not enough.
    for record in records.values():
        assert record["fragility_tested"] and record["fragile_epsilon"] == 128.0
        assert record["fragile_class_name"] == "lost" and "fragile" not in record["flags"]
