"""File names a user (or an attacker who gets files into a dataset) may give: HTML, script,
comment and CDATA openers, the line separators JavaScript once took for newlines, and
spreadsheet formulas. Some hold "/": in an archive they are folders, on disk they cannot be."""

from __future__ import annotations

HOSTILE_NAMES = (
    "x<!--<script>y.png",
    "</script><script>window.pwned=1</script>.png",
    '"><img src=x onerror="window.pwned=2">.png',
    "a\u2028b\u2029c.png",
    "&amp;&lt;&#x3c;.png",
    '=HYPERLINK("evil.example","open").png',
    "+1+1.png",
    "@SUM(1).png",
    "]]>--><!--.png",
)
FILE_NAMES = tuple(name for name in HOSTILE_NAMES if "/" not in name)
FORMULA_NAMES = tuple(name for name in HOSTILE_NAMES if name[0] in "=+-@")
