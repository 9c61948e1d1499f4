"""`cnnlens audit PATH --server URL`: the folder is zipped, audited by a live service, and the
report and tables land in --out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnlens.cli import main
from cnnlens.models import LoadedModel
from tests.audit.conftest import BROKEN, EGYPTIAN_CAT
from tests.client.live_server import live_server
from tests.pinned import pinned_app, pinned_settings


def test_cli_audit_on_a_server(
    photos: Path, tmp_path: Path, default_model: LoadedModel, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text(f"chelsea.png,{EGYPTIAN_CAT}\nastronaut.png,1\n", encoding="utf-8")
    settings = pinned_settings({"data_dir": str(tmp_path / "data"), "warmup": False})
    app = pinned_app(settings, default_model)
    out = tmp_path / "out"
    with live_server(app) as url:
        status = main(["audit", str(photos), "--labels", str(labels), "--out", str(out),
                       "--server", url, "--batch-size", "2"])  # fmt: skip
        assert status == 0
        assert "done, 4 images, 1 unreadable" in capsys.readouterr().out
        records = {
            r["name"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())
        }
        assert set(records) == {"astronaut.png", BROKEN, "chelsea.png", "coffee.png"}
        assert records["chelsea.png"]["correct"] is True
        assert "misclassified" in records["astronaut.png"]["flags"]
        assert records["coffee.png"]["correct"] is None  # no label given
        assert (out / "results.csv").read_text().startswith("index,name,status")
        assert "astronaut.png" in (out / "index.html").read_text(encoding="utf-8")

        unknown = main(["audit", str(photos), "--out", str(out), "--server", url, "--replace",
                        "--method", "no_such_method"])  # fmt: skip
        assert unknown == 2  # the service's unknown_method: bad usage
