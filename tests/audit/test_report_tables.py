"""The report's summary tables: confusion pairs and confident mistakes, escaped, capped."""

from __future__ import annotations

import re

from cnnlens.audit.report import _tables


def _rows(html: str, title: str) -> list[list[str]]:
    """The cells of the table under `title`, header row first."""
    table = html.split(f"<h2>{title}</h2>", 1)[1].split("</table>", 1)[0]
    return [re.findall(r"<t[hd]>(.*?)</t[hd]>", row) for row in table.split("<tr>")[1:]]


def test_tables_list_pairs_and_mistakes_with_escaped_names() -> None:
    summary = {
        "confusion_pairs": [
            {"label_name": f"cat{i}", "predicted_name": "<dog>", "count": 20 - i} for i in range(20)
        ],
        "confident_mistakes": [
            {"name": "a&b.png", "label_name": "cat", "predicted_name": "dog", "confidence": 0.98765}
        ],
    }
    html = _tables(summary)
    pairs = _rows(html, "Confusion pairs")
    assert pairs[0] == ["label", "predicted", "count"]
    assert pairs[1] == ["cat0", "&lt;dog&gt;", "20"]
    assert len(pairs) == 1 + 15  # the 15 most frequent
    mistakes = _rows(html, "Most confident mistakes")
    assert mistakes == [
        ["image", "label", "predicted", "confidence"],
        ["a&amp;b.png", "cat", "dog", "0.988"],
    ]


def test_no_rows_no_table() -> None:
    assert _tables({}) == ""
    only = _tables({"confident_mistakes": [], "confusion_pairs": [
        {"label_name": "a", "predicted_name": "b", "count": 1}
    ]})  # fmt: skip
    assert "Confusion pairs" in only and "Most confident" not in only
