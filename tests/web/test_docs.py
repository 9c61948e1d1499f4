"""/docs offline: same-origin assets only, and Swagger UI lists every operation."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.web.offline import foreign_requests
from tests.web.test_page import _wait

pytestmark = pytest.mark.browser


def test_docs_html_references_only_same_origin_assets(server_url: str) -> None:
    html = httpx.get(server_url + "/docs").text
    references = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)
    assert references, html
    for reference in references:
        assert reference.startswith("/"), reference  # no scheme, no host: this server
        assert httpx.get(server_url + reference).status_code == 200, reference


def test_swagger_ui_renders_every_operation_offline(browser: Any, server_url: str) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get(server_url + "/docs")
    _wait(driver, ".opblock")
    operations = driver.find_elements(By.CSS_SELECTOR, ".opblock")
    spec = httpx.get(server_url + "/openapi.json").json()
    expected = sum(len(methods) for methods in spec["paths"].values())
    assert len(operations) == expected >= 12
    summaries = {e.text for e in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/v1/explain", "/v1/adversarial", "/v1/audits"} <= summaries
    assert foreign_requests(driver, server_url) == []


def test_redoc_is_off_rather_than_half_online(server_url: str) -> None:
    assert httpx.get(server_url + "/redoc").status_code == 404
