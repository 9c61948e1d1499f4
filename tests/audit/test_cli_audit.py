"""`cnnlens audit PATH --labels CSV --out DIR` on a folder with a broken file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cnnlens.cli import main
from tests.audit.conftest import BROKEN, EGYPTIAN_CAT


def test_cli_audit_of_a_folder(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = tmp_path / "labels.csv"
    # chelsea right by index, coffee right by name, astronaut deliberately wrong (a goldfish)
    labels.write_text(f"filename,label\nchelsea.png,{EGYPTIAN_CAT}\ncoffee.png,espresso\n"
                      "astronaut.png,1\n", encoding="utf-8")  # fmt: skip
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("chelsea.png,0,0,256,171\n", encoding="utf-8")  # the whole image
    out = tmp_path / "out"
    status = main(
        [
            "audit", str(photos), "--labels", str(labels), "--boxes", str(boxes),
            "--out", str(out), "--batch-size", "2",
        ]
    )  # fmt: skip
    assert status == 0
    assert "accuracy 66.7% of 3 labelled" in capsys.readouterr().out

    records = {
        r["name"]: r for r in map(json.loads, (out / "results.jsonl").read_text().split("\n")[:-1])
    }
    assert set(records) == {"chelsea.png", "coffee.png", "astronaut.png", BROKEN}
    chelsea, coffee, astronaut, broken = (
        records[n] for n in ("chelsea.png", "coffee.png", "astronaut.png", BROKEN)
    )
    assert chelsea["predicted"] == EGYPTIAN_CAT and chelsea["correct"] is True
    assert "misclassified" not in chelsea["flags"]
    assert coffee["label"] == 967 and coffee["correct"] is True
    assert astronaut["label"] == 1 and astronaut["correct"] is False
    assert "misclassified" in astronaut["flags"]
    assert broken["status"] == "error" and broken["flags"] == ["error"] and broken["error"]
    # the box covers the whole image: all the energy is inside and the pointing game hits
    assert chelsea["maps"]["grad_cam"]["box_energy"] == pytest.approx(1.0)
    assert chelsea["maps"]["grad_cam"]["pointing_hit"] is True
    assert coffee["maps"]["grad_cam"]["box_energy"] is None  # no box given
    probabilities = [p["probability"] for p in chelsea["predictions"]]
    assert len(probabilities) == 5 and probabilities == sorted(probabilities, reverse=True)
    assert chelsea["confidence"] == pytest.approx(probabilities[0])
    assert ("low_confidence" in chelsea["flags"]) == (chelsea["confidence"] < 0.5)

    overlay = out / chelsea["overlays"]["grad_cam"]
    assert overlay.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "results.csv", newline="") as handle:
        rows = {row["name"]: row for row in csv.DictReader(handle)}
    assert set(rows) == set(records)
    assert (
        rows["astronaut.png"]["correct"] == "False"
        and "misclassified" in rows["astronaut.png"]["flags"]
    )

    html = (out / "index.html").read_text(encoding="utf-8")
    for name in records:
        assert name in html
    assert "<svg" in html and "data:image/jpeg;base64," in html and "<script>" in html
    assert "src='http" not in html and 'src="http' not in html  # self-contained
    # flagged images first: the broken file and the misclassified astronaut precede chelsea
    data = html.split("<script id='rows' type='application/json'>")[1].split("</script>")[0]
    order = [entry["d"]["name"] for entry in json.loads(data)]
    assert order.index(BROKEN) < order.index("chelsea.png")
    summary = json.loads((out / "summary.json").read_text())["summary"]
    assert summary["accuracy"] == pytest.approx(2 / 3)
    assert summary["confusion_pairs"][0]["label"] == 1
    assert summary["errors"] == 1


def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    assert "no such file or folder" in capsys.readouterr().err
