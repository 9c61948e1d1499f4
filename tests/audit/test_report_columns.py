"""Every flag is explained by a value in its row, per method; columns that were not asked for
are hidden; the report has its own favicon."""

from __future__ import annotations

import json
import re
from typing import Any

from cnnlens.audit.report import flag_sources, render_report
from cnnlens.audit.summary import summarize


def _chelsea(**extra: Any) -> dict[str, Any]:
    return {
        "index": 0, "name": "chelsea.jpg", "status": "ok", "label": 285,
        "label_name": "Egyptian cat", "predicted": 285, "predicted_name": "Egyptian cat",
        "confidence": 0.82, "correct": True, "has_region": True, "flags": ["off_object"],
        "maps": {
            "grad_cam": {"degenerate": False, "box_energy": 0.73, "pointing_hit": True},
            "saliency": {"degenerate": False, "box_energy": 0.31, "pointing_hit": True},
        },
        "fragility_tested": False, "fragile_epsilon": None, **extra,
    }  # fmt: skip


def _html(records: list[dict[str, Any]], methods: list[str]) -> str:
    return render_report(
        job={"id": "j", "model": "m", "methods": methods, "status": "done",
             "min_box_energy": 0.5},  # fmt: skip
        records=records, summary=summarize(records), thumbnails={}, overlays={}, class_means=[],
    )  # fmt: skip


def _headers(html: str) -> list[str]:
    table = html[html.index("id='results'") :]
    return re.findall(r"<th[^>]*>([^<]*)</th>", table)


def _cells(html: str) -> list[str]:
    """The first row's cells, from the rows the page renders."""
    data = html[html.index("<script id='rows' type='application/json'>") :]
    rows = json.loads(data[data.index(">") + 1 : data.index("</script>")])
    return re.findall(r"<td[^>]*>(.*?)</td>", rows[0]["h"])


def test_each_flag_names_the_method_whose_value_is_shown() -> None:
    html = _html([_chelsea()], ["grad_cam", "saliency"])
    headers = _headers(html)
    for method in ("grad_cam", "saliency"):
        assert f"{method} box energy" in headers and f"{method} pointing" in headers
    cells = dict(zip(headers, _cells(html), strict=True))
    assert cells["grad_cam box energy"] == "0.73" and cells["saliency box energy"] == "0.31"
    assert "off_object: saliency" in cells["flags"]
    data = html[html.index("<script id='rows' type='application/json'>") :]
    row = json.loads(data[data.index(">") + 1 : data.index("</script>")])[0]["h"]
    assert "<td class='bad'>0.31</td>" in row and "<td class='bad'>0.73</td>" not in row
    assert flag_sources(_chelsea(), 0.5) == {"off_object": ["saliency"]}
    assert flag_sources(_chelsea(), 0.8) == {"off_object": ["grad_cam", "saliency"]}


def test_columns_not_asked_for_are_hidden() -> None:
    bare = _chelsea(label=None, label_name=None, correct=None, has_region=False, flags=[])
    bare["maps"] = {"grad_cam": {"degenerate": False, "box_energy": None, "pointing_hit": None}}
    headers = _headers(_html([bare], ["grad_cam"]))
    assert headers == ["#", "image", "grad_cam", "name", "prediction", "confidence", "flags"]
    tested = _chelsea(fragility_tested=True, fragile_epsilon=0.5)
    headers = _headers(_html([tested], ["grad_cam"]))
    assert {"label", "correct", "grad_cam box energy", "fragile ε"} <= set(headers)


def test_favicon_is_inline() -> None:
    html = _html([_chelsea()], ["grad_cam"])
    assert "<link rel='icon' href='data:image/svg+xml;base64," in html


def test_fragility_shows_the_step_and_the_class_it_flipped_to() -> None:
    flipped = _chelsea(
        fragility_tested=True, fragile_epsilon=2.0, fragile_class=281,
        fragile_class_name="tabby, tabby cat", fragile_probability=0.4375, flags=["fragile"],
    )  # fmt: skip
    robust = _chelsea(index=1, name="coffee.jpg", fragility_tested=True, flags=[])
    html = _html([flipped, robust], ["grad_cam"])
    headers = _headers(html)
    assert headers[-2:] == ["fragile ε", "flips to"]
    data = html[html.index("<script id='rows' type='application/json'>") :]
    rows = json.loads(data[data.index(">") + 1 : data.index("</script>")])
    first = dict(zip(headers, re.findall(r"<td[^>]*>(.*?)</td>", rows[0]["h"]), strict=True))
    assert first["fragile ε"] == "2/255" and first["flips to"] == "tabby, tabby cat (0.44)"
    assert rows[0]["v"][-2:] == ["2.0", "tabby, tabby cat"]  # sortable by ε and by class
    second = dict(zip(headers, re.findall(r"<td[^>]*>(.*?)</td>", rows[1]["h"]), strict=True))
    assert second["fragile ε"] == "robust" and second["flips to"] == ""
    untested = _headers(_html([_chelsea()], ["grad_cam"]))
    assert "fragile ε" not in untested and "flips to" not in untested
