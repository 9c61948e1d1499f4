"""What keeps the HTML cnnlens writes (the web page, /docs, the audit report) inert to the
strings users put in it: JSON escaped for embedding, and Content-Security-Policies that let
only the page's own scripts run."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

_JSON_IN_HTML = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def json_in_html(value: Any) -> str:
    """JSON to embed in an HTML page (a script element, an attribute): `<`, `>`, `&`, U+2028 and
    U+2029 escaped, so that no text in it can end the element, open a comment or a tag, or
    break a JavaScript string."""
    return json.dumps(value, separators=(",", ":")).translate(_JSON_IN_HTML)


def csp(**directives: Iterable[str]) -> str:
    """A Content-Security-Policy from directives (underscores become dashes); every policy
    refuses framing, <base> and form posts unless it says otherwise."""
    policy = {"default-src": ["'none'"], "base-uri": ["'none'"], "form-action": ["'none'"]}
    policy |= {name.replace("_", "-"): list(sources) for name, sources in directives.items()}
    policy["frame-ancestors"] = ["'none'"]
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in policy.items())


def inline_hashes(*texts: str) -> list[str]:
    """CSP sources allowing exactly these inline <script> or <style> texts: 'sha256-...'."""
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"
        for text in texts
    ]


_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def page_policy(html: str, **directives: Iterable[str]) -> str:
    """The policy of a generated page: `directives`, and script-src allowing exactly its
    inline scripts (their hashes, taken from the page itself), besides any sources given."""
    scripts = inline_hashes(*_INLINE_SCRIPT.findall(html))
    return csp(**{**directives, "script_src": [*directives.get("script_src", ()), *scripts]})
