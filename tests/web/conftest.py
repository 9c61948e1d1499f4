"""Fixtures of the browser tests: headless Chromium via selenium, offline but for loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.web.browser import missing, start_browser


@pytest.fixture(scope="package")
def browser() -> Iterator[object]:
    """One Chromium for the package; skips only when it or chromedriver is not installed."""
    reason = missing()
    if reason is not None:
        if os.environ.get("CNNLENS_REQUIRE_BROWSER"):  # set by CI: the test must run there
            pytest.fail(reason)
        pytest.skip(reason)
    driver = start_browser()
    try:
        yield driver
    finally:
        driver.quit()
