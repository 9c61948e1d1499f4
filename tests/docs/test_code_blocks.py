"""Every code block of the README and the guides runs: `python` and `bash` blocks, in order,
page by page, each page in a fresh folder, against a live service on 127.0.0.1 (see
docs/writing-docs.md). `toml` blocks are parsed and their keys checked against the settings."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cnnlens.models import LoadedModel
from tests.docs.blocks import ROOT, RUNNABLE, Block, blocks, markers_without_block, pages

SERVICE = "http://127.0.0.1:8000"  # what the pages say; the test's own server stands in
PAGE_TIMEOUT_S = 1800  # real models on a small, shared CPU

# Runs a page's blocks in order: python blocks share one namespace, bash blocks run with -e.
DRIVER = """
import json, subprocess, sys
namespace = {"__name__": "__main__"}
for block in json.load(open(sys.argv[1])):
    print(f"=== {block['where']} ({block['language']})", flush=True)
    if block["language"] == "python":
        source = "\\n" * (block["line"]) + block["source"]  # tracebacks name the page's lines
        exec(compile(source, block["page"], "exec"), namespace)
    else:
        subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block["source"]], check=True)
"""


def _runnable_pages() -> list[Path]:
    return [p for p in pages() if any(_runs(b) for b in blocks(p))]


def _runs(block: Block) -> bool:
    return block.language in RUNNABLE and block.not_run is None


@pytest.fixture(scope="module")
def service_url(
    default_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    from tests.client.conftest import make_app
    from tests.client.live_server import live_server

    data = tmp_path_factory.mktemp("docs-service")
    with live_server(make_app(default_model, data_dir=str(data))) as url:
        yield url


@pytest.mark.slow
@pytest.mark.parametrize("page", _runnable_pages(), ids=str)
def test_every_block_of_the_page_runs(page: Path, service_url: str, tmp_path: Path) -> None:
    (tmp_path / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    script = [
        {
            "page": str(page), "line": block.line, "where": block.where,
            "language": block.language, "source": block.source.replace(SERVICE, service_url),
        }
        for block in blocks(page)
        if _runs(block)
    ]  # fmt: skip
    (tmp_path / ".blocks.json").write_text(json.dumps(script), encoding="utf-8")
    (tmp_path / ".driver.py").write_text(DRIVER, encoding="utf-8")
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "PATH": os.pathsep.join([str(Path(sys.prefix) / "bin"), os.environ.get("PATH", "")]),
        "MPLBACKEND": "Agg",
    }
    done = subprocess.run(
        [sys.executable, ".driver.py", ".blocks.json"], cwd=tmp_path, env=environment,
        capture_output=True, text=True, timeout=PAGE_TIMEOUT_S,
    )  # fmt: skip
    output = (done.stdout + done.stderr)[-6000:]
    assert done.returncode == 0, f"{page}: a block failed\n{output}"
    assert output.count("=== ") >= len(script), output


def test_blocks_that_do_not_run_say_why() -> None:
    for page in pages():
        assert markers_without_block(page) == [], f"{page}: a `not run` marker before no fence"
        for block in blocks(page):
            if block.not_run is not None:
                assert block.not_run.strip(), f"{block.where}: a `not run` marker needs a reason"


def test_toml_blocks_parse_and_use_known_settings() -> None:
    from cnnlens.service.settings import Limits, ModelConfig, Settings

    known = set(Settings.model_fields) | {"api_keys"}
    checked = 0
    for page in pages():
        for block in blocks(page):
            if block.language != "toml":
                continue
            data: dict[str, Any] = tomllib.loads(block.source)
            assert set(data) <= known, f"{block.where}: unknown keys {set(data) - known}"
            assert set(data.get("limits", {})) <= set(Limits.model_fields), block.where
            for model in data.get("models", []):
                unknown = set(model) - set(ModelConfig.model_fields)
                assert not unknown, f"{block.where}: unknown model keys {unknown}"
            checked += 1
    assert checked >= 3


def test_the_readme_is_short_and_its_links_resolve() -> None:
    import re

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links {target}, which does not exist"
    for command in ("make serve", "make test", ".venv/bin/cnnlens", "source .venv/bin/activate"):
        assert command in text
    assert shutil.which("bash") is not None
