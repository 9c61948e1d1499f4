"""The docs site: it builds offline with --strict, every guide is in the navigation, the pages
load nothing from another host and run no inline script, and the service serves it at /guide
(or says how to build it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cnnlens.models import LoadedModel
from tests.docs.blocks import ROOT

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>\s*\S")
FOREIGN = re.compile(
    r"<(?:script|link|img|iframe)\b(?![^>]*rel=\"canonical\")[^>]*\b(?:src|href)=\"(?:https?:)?//",
    re.I,
)


def build_site(out: Path) -> Path:
    """The site built as `make docs` builds it (offline, --strict), into `out`."""
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_site(tmp_path_factory.mktemp("site"))


def _nav_files(entries: Any) -> list[str]:
    found: list[str] = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        found += _nav_files(value) if isinstance(value, list) else [value]
    return found


def test_every_guide_and_reference_page_is_in_the_navigation() -> None:
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    listed = set(_nav_files(config["nav"]))
    for folder in ("guides", "reference"):
        for page in (ROOT / "docs" / folder).glob("*.md"):
            assert f"{folder}/{page.name}" in listed, f"{folder}/{page.name} is not in nav"
    assert config["theme"]["font"] == "false"  # no Google fonts


def test_pages_load_nothing_foreign_and_run_no_inline_script(site: Path) -> None:
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 20
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert not INLINE_SCRIPT.search(html), f"{page}: an inline script"
        assert not FOREIGN.search(html), f"{page}: a resource from another host"
        assert " onclick=" not in html and " onload=" not in html, page
    reference = (site / "reference" / "index.html").read_text(encoding="utf-8")
    assert "load_model" in reference and "Args" not in reference  # rendered, not raw
    assert "Parameters" in reference


@pytest.fixture(scope="module")
def served(
    default_model: LoadedModel, site: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    from tests.client.conftest import make_app
    from tests.client.live_server import live_server

    missing = tmp_path_factory.mktemp("not-built")
    with (
        live_server(make_app(default_model, guide_dir=str(site))) as built,
        live_server(make_app(default_model, guide_dir=str(missing))) as unbuilt,
    ):
        yield {"built": built, "unbuilt": unbuilt}


def test_the_service_serves_the_site_at_guide(served: dict[str, str], site: Path) -> None:
    url = served["built"]
    home = httpx.get(url + "/guide/")
    assert home.status_code == 200 and "cnnlens" in home.text
    assert httpx.get(url + "/guide", follow_redirects=True).url.path == "/guide/"
    guide = httpx.get(url + "/guide/guides/explain/")
    assert guide.status_code == 200 and "Explain an image by REST" in guide.text
    for asset in re.findall(r'(?:src|href)="([^"#]+\.(?:js|css))"', guide.text):
        path = (Path("/guide/guides/explain/") / asset).resolve()
        assert httpx.get(url + str(path)).status_code == 200, asset
    assert httpx.get(url + "/guide/search/search_index.json").status_code == 200
    assert httpx.get(url + "/guide/no/such/page/").status_code == 404


def test_an_unbuilt_guide_says_how_to_build_it(served: dict[str, str]) -> None:
    answer = httpx.get(served["unbuilt"] + "/guide/")
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert error["code"] == "guide_not_built" and "make docs" in error["message"]
