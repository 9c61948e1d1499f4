"""mkdocs hook: every inline script of the built pages moves to a file of its own.

The service serves the site at /guide under a Content-Security-Policy that runs scripts from
its own origin only (no 'unsafe-inline'); the theme's few inline scripts (its storage helpers,
the palette) become same-origin files, byte for byte, loaded where they stood. JSON data
blocks (`type="application/json"`) are data, not scripts, and stay.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SCRIPTS = re.compile(r"<script(?P<attributes>[^>]*)>(?P<body>.*?)</script>", re.DOTALL)
FOLDER = "assets/javascripts/inline"


def externalized(html: str, site_dir: str, prefix: str) -> str:
    """`html` with each inline script's body written to FOLDER and loaded from `prefix`."""

    def external(match: re.Match[str]) -> str:
        attributes, body = match["attributes"], match["body"]
        if "src=" in attributes or "application/json" in attributes or not body.strip():
            return match[0]
        name = hashlib.sha256(body.encode("utf-8")).hexdigest()[:16] + ".js"
        path = Path(site_dir) / FOLDER / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text(body, encoding="utf-8")
        return f'<script{attributes} src="{prefix}{FOLDER}/{name}"></script>'

    return SCRIPTS.sub(external, html)


def on_post_page(output: str, page: Any, config: Any) -> str:
    depth = page.url.count("/") if page.url else 0  # "guides/explain/" is two folders down
    return externalized(output, config["site_dir"], "../" * depth)


def on_post_template(output: str, template_name: str, config: Any) -> str:
    """Pages built from a template alone (404.html) link from the site's root path."""
    if not template_name.endswith(".html"):
        return output
    root = urlsplit(config["site_url"] or "/").path or "/"
    return externalized(output, config["site_dir"], root if root.endswith("/") else root + "/")
