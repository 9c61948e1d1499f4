"""Where `cnnlens audit` writes: a folder per input by default, never another audit's folder
silently; `--engine ray` without Ray: a clear message naming the extra, and no job left behind;
URIs read over pyarrow's filesystems by the local engine too."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlens.cli import main
from cnnlens.cli.commands.audit import default_out
from tests.audit.conftest import BROKEN


def _jobs(out: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(out / "audit.sqlite") as db:
        return db.execute("SELECT id, status FROM jobs ORDER BY created").fetchall()


def test_default_output_folder_per_input() -> None:
    assert default_out("photos/") == Path("audit-photos")
    assert default_out("/data/cats.tar.gz") == Path("audit-cats")
    assert default_out("list.csv") == Path("audit-list")
    assert default_out("s3://bucket/prefix/") == Path("audit-prefix")
    assert default_out("file:///") == Path("audit-input")
    assert default_out("gs://b/a b:c") == Path("audit-a_b_c")


def test_another_audits_folder_is_refused(
    photos: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["audit", str(photos), "--quiet", "--batch-size", "4"]) == 0
    out = tmp_path / "audit-photos"
    first = _jobs(out)
    assert [status for _, status in first] == ["done"]

    # the same audit again: it resumes (nothing to do), the same job
    assert main(["audit", str(photos), "--batch-size", "4"]) == 0
    assert "0 analyzed now, 4 already done" in capsys.readouterr().out
    assert _jobs(out) == first
    report = (out / "index.html").read_bytes()  # (rewritten: its time is the resume's)

    # another config into the same folder: refused, nothing written, no job added
    with pytest.raises(SystemExit) as refused:
        main(["audit", str(photos), "--quiet", "--method", "saliency"])
    assert refused.value.code == 2
    error = capsys.readouterr().err
    assert "holds the report of another audit" in error and first[0][0] in error
    assert "--replace" in error and "Traceback" not in error
    assert _jobs(out) == first and (out / "index.html").read_bytes() == report

    # another input gets its own folder
    other = tmp_path / "more"
    other.mkdir()
    (other / "chelsea.png").write_bytes((photos / "chelsea.png").read_bytes())
    assert main(["audit", str(other), "--quiet", "--method", "saliency"]) == 0
    assert (tmp_path / "audit-more" / "index.html").is_file() and _jobs(out) == first

    # asked for: the other audit replaces the report
    assert main(["audit", str(photos), "--quiet", "--method", "saliency", "--replace"]) == 0
    assert len(_jobs(out)) == 2
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["name"] for r in records} == {"chelsea.png", "coffee.png", "astronaut.png", BROKEN}
    assert all("saliency" in r["maps"] for r in records if r["status"] == "ok")


def test_ray_engine_without_ray(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = (
        "import sys; sys.modules['ray'] = None; from cnnlens.cli import main;"
        f" sys.exit(main(['audit', {str(photos)!r}, '--engine', 'ray', '--out', {str(out)!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "pip install 'cnnlens[ray]'" in done.stderr and "Traceback" not in done.stderr
    assert not (out / "audit.sqlite").exists()  # no job left queued


def test_library_ray_engine_without_ray(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnlens.audit import run_audit
    from cnnlens.audit.extras import MissingExtraError
    from tests.audit.tiny_model import tiny_loaded

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingExtraError, match=r"cnnlens\[ray\]"):
        run_audit(photos, tmp_path / "out", engine="ray", model=tiny_loaded())
    assert not (tmp_path / "out").exists()


def test_uris_locally_and_a_missing_filesystem(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["audit", f"file://{photos}", "--out", str(out), "--quiet"]) == 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    statuses = {r["name"]: r["status"] for r in records}
    assert statuses == {"astronaut.png": "ok", BROKEN: "error", "chelsea.png": "ok",
                        "coffee.png": "ok"}  # fmt: skip
    assert next(r for r in records if r["name"] == "chelsea.png")["predicted"] == 285

    with pytest.raises(SystemExit) as missing:
        main(["audit", "sftp://host/photos", "--out", str(tmp_path / "o2")])
    assert missing.value.code == 2
    error = capsys.readouterr().err
    assert "no filesystem for sftp:// is installed" in error and "paramiko" in error
    assert not (tmp_path / "o2").exists()
