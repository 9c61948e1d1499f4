"""Network off for the browser tests: Chromium resolves no host but the loopback server's."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

# Every name fails to resolve except 127.0.0.1, where the live server listens: a page that
# needs a CDN breaks in the tests as it would on a machine without internet.
OFFLINE_FLAG = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"

# Every URL the page loaded (the document, scripts, styles, images, fetches).
RESOURCE_URLS = """
return [location.href, ...performance.getEntriesByType("resource").map((e) => e.name)];
"""


def foreign_requests(driver: Any, origin: str) -> list[str]:
    """The URLs the page loaded from anywhere but `origin` (data: and blob: are local)."""
    urls: list[str] = driver.execute_script(RESOURCE_URLS)
    own = urlsplit(origin)
    foreign = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob"):
            continue
        if (parts.scheme, parts.netloc) != (own.scheme, own.netloc):
            foreign.append(url)
    return foreign
