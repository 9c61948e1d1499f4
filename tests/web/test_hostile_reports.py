"""In headless Chromium, under the Content-Security-Policies the service sends: the REST report
and the CLI's on-disk report of images with hostile names render every row, run nothing of
theirs and violate no policy; the web page still explains an image; a page of another site that
posts to the service is refused."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from cnnlens.cli import main
from cnnlens.models import LoadedModel
from tests.client.live_server import live_server
from tests.hostile_names import FILE_NAMES, HOSTILE_NAMES
from tests.pinned import pinned_app, pinned_settings
from tests.uploads import small_png, zipped
from tests.web.report_page import open_report, report_names, watch_violations

pytestmark = pytest.mark.browser
TIMEOUT_S = 30


@pytest.fixture(scope="module")
def service(default_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("data")
    settings = pinned_settings({"warmup": False, "data_dir": str(data_dir)})
    with live_server(pinned_app(settings, default_model)) as url:
        yield url


def _open(driver: Any, url: str) -> None:
    watch_violations(driver)
    driver.get(url)


def _rendered_names(driver: Any, url: str) -> list[str]:
    """The names of every row of the report at `url`, once its script has rendered them."""
    watch_violations(driver)
    open_report(driver, url)
    return report_names(driver)


def _assert_inert(driver: Any) -> None:
    assert driver.execute_script("return window.pwned") is None  # no name ran as script
    assert driver.execute_script("return window.__violations") == []
    images = driver.execute_script(
        "return [...document.querySelectorAll('img')].map((img) => img.naturalWidth)"
    )
    assert images and all(width > 0 for width in images)  # embedded images load under the CSP


def test_rest_report_with_hostile_names_renders_every_row(
    browser: Any, service: str, chelsea: Image.Image
) -> None:
    png = small_png(chelsea)
    archive = zipped(dict.fromkeys(HOSTILE_NAMES, png))
    with httpx.Client(base_url=service, timeout=60) as http:
        answer = http.post("/v1/audits", files={"archive": ("h.zip", archive)})
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]
        deadline = time.monotonic() + 180
        while http.get(f"/v1/audits/{job_id}").json()["status"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        stored = [r["name"] for r in http.get(f"/v1/audits/{job_id}/results").json()["results"]]
    names = _rendered_names(browser, f"{service}/v1/audits/{job_id}/report")
    assert sorted(names) == sorted(stored) and len(names) == len(HOSTILE_NAMES)
    shown = browser.execute_script("return document.getElementById('shown').textContent")
    assert shown == f"{len(HOSTILE_NAMES)} of {len(HOSTILE_NAMES)} images"
    _assert_inert(browser)


def test_cli_report_with_hostile_names_renders_every_row(
    browser: Any, tmp_path: Path, chelsea: Image.Image
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    png = small_png(chelsea)
    for name in FILE_NAMES:
        (folder / name).write_bytes(png)
    out = tmp_path / "out"
    assert main(["audit", str(folder), "--out", str(out), "--batch-size", "4", "-q"]) == 0
    names = _rendered_names(browser, (out / "index.html").as_uri())
    assert sorted(names) == sorted(FILE_NAMES)
    _assert_inert(browser)


def test_the_web_page_explains_under_its_policy(
    browser: Any, service: str, chelsea_png: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as expected
    from selenium.webdriver.support.ui import WebDriverWait

    _open(browser, f"{service}/")
    wait = WebDriverWait(browser, TIMEOUT_S)
    wait.until(expected.presence_of_element_located((By.CSS_SELECTOR, "#methods-list input")))
    browser.find_element(By.ID, "image-input").send_keys(str(chelsea_png))
    wait.until(expected.element_to_be_clickable((By.ID, "explain-button"))).click()
    result = wait.until(expected.presence_of_element_located((By.CSS_SELECTOR, "#gallery canvas")))
    assert result.size["width"] > 0
    assert browser.execute_script("return window.__violations") == []


class _AttackerPage(http.server.BaseHTTPRequestHandler):
    """A page on another origin that, once opened, posts a form to the service."""

    target = ""

    def do_GET(self) -> None:  # noqa: N802 (the handler's name is the HTTP method's)
        page = (
            f"<form id='f' method='post' enctype='multipart/form-data' action='{self.target}'>"
            "<input name='model' value='efficientnet_lite0'></form>"
            "<script>document.getElementById('f').submit();</script>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_a_page_of_another_origin_cannot_post(browser: Any, service: str) -> None:
    handler = type("Page", (_AttackerPage,), {"target": f"{service}/v1/audits"})
    attacker = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=attacker.serve_forever, daemon=True)
    thread.start()
    try:
        before = httpx.get(f"{service}/v1/audits", timeout=30).json()["audits"]
        browser.get(f"http://127.0.0.1:{attacker.server_address[1]}/")
        deadline = time.monotonic() + TIMEOUT_S
        while "cross_origin_refused" not in browser.page_source:
            assert time.monotonic() < deadline, browser.page_source[:500]
            time.sleep(0.1)
        assert browser.current_url == f"{service}/v1/audits"  # the browser's own post, refused
        assert httpx.get(f"{service}/v1/audits", timeout=30).json()["audits"] == before
    finally:
        attacker.shutdown()
        thread.join(timeout=10)
