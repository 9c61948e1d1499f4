"""A resumed audit gives the map and neighbours of an uninterrupted one; channel exemplars
equal a brute-force pass over the images (tiny seeded model, synthetic images)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlens.audit import AuditConfig, JobInfo, run_audit
from tests.audit.tiny_model import tiny_loaded, write_synthetic

IMAGES = 40


class Killed(Exception):
    pass


def _rows(out: Path) -> dict[str, dict[str, Any]]:
    lines = (out / "results.jsonl").read_text("utf-8").splitlines()
    return {record["name"]: record for record in map(json.loads, lines)}


def test_resumed_audit_gives_the_same_map_and_neighbours(tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "images", IMAGES)
    config = AuditConfig(model="tiny", batch_size=4)

    def kill_after_three_batches(job: JobInfo) -> None:
        if job.done >= 12:
            raise Killed

    killed = tmp_path / "killed"
    with pytest.raises(Killed):
        run_audit(source, killed, config, model=tiny_loaded(), on_progress=kill_after_three_batches)
    resumed = run_audit(source, killed, config, model=tiny_loaded())
    assert resumed.job.status == "done" and resumed.processed == IMAGES - 12
    whole = run_audit(source, tmp_path / "whole", config, model=tiny_loaded())
    assert whole.processed == IMAGES

    first, second = _rows(killed), _rows(tmp_path / "whole")
    assert first.keys() == second.keys()
    for name, record in first.items():
        other = second[name]
        assert [n["name"] for n in record["neighbors"]] == [n["name"] for n in other["neighbors"]]
        assert (record["x"], record["y"], record["cluster"]) == (
            other["x"], other["y"], other["cluster"],
        )  # fmt: skip
    summaries = [
        json.loads((out / "summary.json").read_text())["summary"]["features"]
        for out in (killed, tmp_path / "whole")
    ]
    assert summaries[0]["map"]["method"] == "umap"
    assert summaries[0]["map"] == summaries[1]["map"]
    assert summaries[0]["clusters"] == summaries[1]["clusters"]


def _brute_force(
    source: Path, layer_end: int, k: int
) -> dict[int, list[tuple[str, float, int, int]]]:
    """channel -> the top k (name, activation, row, column) over every image, one forward each."""
    model = tiny_loaded()
    found: dict[int, list[tuple[str, float, int, int]]] = {}
    for path in sorted(source.iterdir()):
        x = model.preprocessing(Image.open(path).convert("RGB"))
        with torch.no_grad():
            activations = model.module[:layer_end](x)[0]  # (C, h, w)
        for channel, plane in enumerate(activations):
            position = int(plane.flatten().argmax())
            row, column = divmod(position, plane.shape[1])
            found.setdefault(channel, []).append((path.name, float(plane.max()), row, column))
    return {
        channel: sorted(entries, key=lambda e: (-e[1], e[0]))[:k]
        for channel, entries in found.items()
    }


def test_exemplars_equal_a_brute_force_pass(tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "images", 24)
    config = AuditConfig(
        model="tiny", batch_size=5, features={"exemplars": ["2", "0"], "exemplars_k": 3}
    )
    run = run_audit(source, tmp_path / "out", config, model=tiny_loaded())
    exemplars = json.loads((tmp_path / "out" / "exemplars.json").read_text())
    assert set(exemplars) == {"0", "2"} and run.outputs["exemplars.json"].is_file()
    model = tiny_loaded()
    for layer, layer_end in (("2", 3), ("0", 1)):
        field = model.layers.get(layer).receptive_field  # type: ignore[union-attr]
        assert field == {"0": 3, "2": 5}[layer]
        half = (field - 1) // 2
        expected = _brute_force(source, layer_end, 3)
        assert set(exemplars[layer]) == {str(c) for c in expected}
        for channel, entries in expected.items():
            found = exemplars[layer][str(channel)]
            assert [e["name"] for e in found] == [name for name, *_ in entries]
            np.testing.assert_allclose(
                [e["activation"] for e in found], [value for _, value, *_ in entries], rtol=1e-5
            )
            # the receptive field of the maximum's cell, on the 32 x 32 image (= the input)
            assert [e["box"] for e in found] == [
                [max(0, c - half), max(0, r - half), min(32, c + half + 1), min(32, r + half + 1)]
                for _, _, r, c in entries
            ]
        sheet = Image.open(tmp_path / "out" / "exemplars" / layer / "0.png")
        assert sheet.size == (2 * 96, 2 * 96)  # 3 crops in a 2 x 2 grid of tiles
