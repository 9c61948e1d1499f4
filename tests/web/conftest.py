"""Fixtures of the browser tests: the app behind uvicorn and headless Chromium via selenium."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.web.offline import OFFLINE_FLAG

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
    OFFLINE_FLAG,
)


def _find(names: tuple[str, ...]) -> str | None:
    return next((path for name in names if (path := shutil.which(name))), None)


@pytest.fixture(scope="package")
def browser() -> Iterator[object]:
    """Headless Chromium via chromedriver, offline but for loopback; skips if not installed."""
    chromium, chromedriver = _find(CHROMIUM_NAMES), _find(("chromedriver",))
    if chromium is None or chromedriver is None:
        missing = " and ".join(
            name
            for name, path in (("chromium", chromium), ("chromedriver", chromedriver))
            if path is None
        )
        reason = f"{missing} not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CNNLENS_REQUIRE_BROWSER"):  # set by CI: the test must run there
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "SEVERE"})  # JS errors, for reports
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
