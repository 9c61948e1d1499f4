"""Headless Chromium via selenium, network off but for loopback (tests and screenshots)."""

from __future__ import annotations

import shutil
from typing import Any

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
    "--hide-scrollbars",
    OFFLINE_FLAG,
)


def find(names: tuple[str, ...]) -> str | None:
    return next((path for name in names if (path := shutil.which(name))), None)


def missing() -> str | None:
    """Why no browser can start here, or None."""
    absent = [
        name
        for name, names in (("chromium", CHROMIUM_NAMES), ("chromedriver", ("chromedriver",)))
        if find(names) is None
    ]
    if not absent:
        return None
    return f"{' and '.join(absent)} not installed (apt-get install chromium chromium-driver)"


def start_browser(width: int = 1280, height: int = 1000) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = find(CHROMIUM_NAMES) or ""
    for flag in (*CHROMIUM_FLAGS, f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "SEVERE"})  # JS errors, for reports
    driver = webdriver.Chrome(
        service=Service(executable_path=find(("chromedriver",))), options=options
    )
    driver.set_page_load_timeout(30)
    return driver
