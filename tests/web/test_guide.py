"""/guide in headless Chromium under a strict content security policy: the docs site's
navigation and search run with scripts from the service's own origin only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cnnlens.models import LoadedModel
from tests.docs.test_site import build_site

pytestmark = pytest.mark.browser


def test_the_site_works_under_a_strict_content_security_policy(
    browser: Any, default_model: LoadedModel, tmp_path: Path
) -> None:
    """Scripts from the service's own origin only: the theme's navigation and search run, and
    the browser reports no refused script."""
    import httpx
    from selenium.webdriver.common.by import By

    from tests.client.conftest import make_app
    from tests.client.live_server import live_server
    from tests.web.views import wait_for

    site = build_site(tmp_path / "site")
    app = make_app(default_model, guide_dir=str(site))  # with the service's own policy
    driver = browser
    driver.get_log("browser")
    with live_server(app) as url:
        policy = httpx.get(url + "/guide/guides/explain/").headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        driver.get(url + "/guide/guides/explain/")
        wait_for(driver, "[data-md-component='search-query']")
        query = driver.find_element(By.CSS_SELECTOR, "[data-md-component='search-query']")
        query.click()
        query.send_keys("budget")
        wait_for(driver, ".md-search-result__item", timeout=30)
        refused = [
            e["message"]
            for e in driver.get_log("browser")
            if "Content Security" in e["message"] or "Refused" in e["message"]
        ]
        assert refused == []
