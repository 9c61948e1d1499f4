"""The report's map and detail view in headless Chromium, on a report of synthetic rows in three
separate blobs: a box and a lasso dragged with pointer events filter the table to exactly the
points inside them, colour-by switches the legend and the points' colours, hovering shows the
image, and every row's detail view (embedded or past the embedded rows) shows its full-size
overlay and its neighbours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cnnlens.audit import report as report_module
from tests.web.dataset_views import POINTER, drag_on_map
from tests.web.map_records import OVERLAY_SIZE, map_records, write_map_report
from tests.web.report_page import console_errors, report_names, violations, watch_violations
from tests.web.views import wait_for

pytestmark = pytest.mark.browser

COUNT = 300
EMBEDDED = 20  # rows with embedded thumbnails in this report; the others link their files
# Every point's place on the screen (client pixels), by image index.
POINTS = """
const found = {};
for (const row of window.cnnlensReport.rows) {
  found[row.d.index] = window.cnnlensMap.point(row.d.index);
}
return found;
"""
# The canvas's pixel (RGB) at client coordinates.
PIXEL = """
const [x, y] = arguments;
const canvas = document.getElementById("map");
const rect = canvas.getBoundingClientRect();
const ratio = canvas.width / rect.width;
const data = canvas.getContext("2d")
  .getImageData(Math.round((x - rect.left) * ratio), Math.round((y - rect.top) * ratio), 1, 1).data;
return [data[0], data[1], data[2]];
"""


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return map_records(COUNT)


@pytest.fixture(scope="module")
def report(records: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the rows, with EMBEDDED rows embedded; the others link their files."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(report_module, "EMBEDDED_ROWS", EMBEDDED)
        return write_map_report(tmp_path_factory.mktemp("report"), records)


def _open(driver: Any, report: Path) -> dict[int, tuple[float, float]]:
    console_errors(driver)  # drop what the shared browser's earlier pages logged
    watch_violations(driver)
    driver.get(report.as_uri())
    wait_for(driver, "#map-legend li")
    driver.execute_script("document.getElementById('map').scrollIntoView({block: 'center'})")
    points: dict[str, list[float]] = driver.execute_script(POINTS)
    return {int(index): (float(x), float(y)) for index, (x, y) in points.items()}


def _blob(records: list[dict[str, Any]], cluster: int) -> set[str]:
    return {r["name"] for r in records if r["cluster"] == cluster}


def test_a_box_on_the_map_filters_the_table(
    browser: Any, report: Path, records: list[dict[str, Any]]
) -> None:
    points = _open(browser, report)
    blob = [points[r["index"]] for r in records if r["cluster"] == 1]
    x0, x1 = min(p[0] for p in blob) - 6, max(p[0] for p in blob) + 6
    y0, y1 = min(p[1] for p in blob) - 6, max(p[1] for p in blob) + 6
    drag_on_map(browser, [(x0, y0), ((x0 + x1) / 2, (y0 + y1) / 2), (x1, y1)])
    inside = {
        records[index]["name"]
        for index, (x, y) in points.items()
        if x0 <= x <= x1 and y0 <= y <= y1
    }
    assert inside == _blob(records, 1)  # the blobs lie apart: the box holds one of them
    assert sorted(report_names(browser)) == sorted(inside)
    shown = browser.execute_script("return document.getElementById('shown').textContent")
    assert shown == f"{len(inside)} of {COUNT} images (selected on the map)"
    status = browser.execute_script("return document.getElementById('map-status').textContent")
    assert status == f"{COUNT} images on the map · {len(inside)} selected"
    # the table's own filter narrows the selection further
    search = browser.find_element("id", "search")
    search.send_keys("img00000")  # img000001 ... img000009 of blob 1: indices 1, 4, 7
    assert sorted(report_names(browser)) == sorted(n for n in inside if n.startswith("img00000"))
    browser.execute_script(
        "const s = document.getElementById('search'); s.value = '';"
        "s.dispatchEvent(new Event('input'));"
    )
    browser.find_element("id", "map-clear").click()
    assert len(report_names(browser)) == COUNT


def test_a_lasso_on_the_map_filters_the_table(
    browser: Any, report: Path, records: list[dict[str, Any]]
) -> None:
    points = _open(browser, report)
    browser.find_element("id", "map-mode-lasso").click()
    blob = [points[r["index"]] for r in records if r["cluster"] == 2]
    cx = sum(p[0] for p in blob) / len(blob)
    cy = sum(p[1] for p in blob) / len(blob)
    a = 2 * max(abs(p[0] - cx) for p in blob) + 8
    b = 2 * max(abs(p[1] - cy) for p in blob) + 8
    corners = [(cx, cy - b), (cx + a, cy), (cx, cy + b), (cx - a, cy), (cx, cy - b)]
    path = [corners[0]]
    for start, end in zip(corners, corners[1:], strict=False):  # a drag along each edge
        path += [(start[0] + (end[0] - start[0]) * t / 6, start[1] + (end[1] - start[1]) * t / 6)
                 for t in range(1, 7)]  # fmt: skip
    drag_on_map(browser, path)
    reach = {index: abs(x - cx) / a + abs(y - cy) / b for index, (x, y) in points.items()}
    assert not any(0.98 < value < 1.02 for value in reach.values())  # no point on the edge
    inside = {records[index]["name"] for index, value in reach.items() if value < 1}
    assert inside == _blob(records, 2)
    assert sorted(report_names(browser)) == sorted(inside)
    browser.find_element("id", "map-clear").click()
    assert len(report_names(browser)) == COUNT


def _hex(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def test_colour_by_switches_the_legend_and_the_points(
    browser: Any, report: Path, records: list[dict[str, Any]]
) -> None:
    from selenium.webdriver.support.ui import Select

    points = _open(browser, report)
    legend = browser.execute_script("return window.cnnlensMap.legend()")
    assert [(e["name"], e["count"]) for e in legend] == [
        ("Egyptian cat", 100), ("goldfish", 100), ("tench", 100),
    ]  # most frequent first, ties by name  # fmt: skip
    Select(browser.find_element("id", "map-colour")).select_by_value("correctness")
    legend = browser.execute_script("return window.cnnlensMap.legend()")
    wrong = [r for r in records if not r["correct"]]
    assert [(e["name"], e["count"]) for e in legend] == [
        ("correct", COUNT - len(wrong)), ("wrong", len(wrong)),
    ]  # fmt: skip
    shown = [
        item.text.split("\n") for item in browser.find_elements("css selector", "#map-legend li")
    ]
    assert shown == [["correct", str(COUNT - len(wrong))], ["wrong", str(len(wrong))]]
    # a wrong point is drawn in the legend's "wrong" colour (over white, at 90 % opacity)
    colours = {e["name"]: _hex(e["colour"]) for e in legend}
    for record in wrong[:5]:
        pixel = browser.execute_script(PIXEL, *points[record["index"]])
        expected = [0.9 * c + 0.1 * 255 for c in colours["wrong"]]
        assert all(abs(p - e) < 30 for p, e in zip(pixel, expected, strict=True)), pixel
    Select(browser.find_element("id", "map-colour")).select_by_value("cluster")
    legend = browser.execute_script("return window.cnnlensMap.legend()")
    assert sorted((e["name"], e["count"]) for e in legend) == [
        ("cluster 0", 100), ("cluster 1", 100), ("cluster 2", 100),
    ]  # fmt: skip
    Select(browser.find_element("id", "map-colour")).select_by_value("flag")
    counts = browser.execute_script("return window.cnnlensMap.legend()")
    issues = {r["name"] for r in records if r["label_issue"]}  # a label issue comes first
    misclassified = {r["name"] for r in records if not r["correct"]} - issues
    assert {e["name"]: e["count"] for e in counts} == {
        "label_issue": len(issues), "misclassified": len(misclassified),
        "no flag": COUNT - len(issues) - len(misclassified),
    }  # fmt: skip
    # a legend entry selects its points
    entry = [e["name"] for e in counts].index("label_issue")
    browser.find_element("css selector", f"#map-legend li:nth-child({entry + 1}) button").click()
    assert sorted(report_names(browser)) == sorted(issues)
    browser.find_element("id", "map-clear").click()


def test_hovering_a_point_shows_its_image(
    browser: Any, report: Path, records: list[dict[str, Any]]
) -> None:
    points = _open(browser, report)
    embedded = browser.execute_script(
        "return window.cnnlensReport.rows.slice(0, arguments[0]).map((r) => r.d.index)", EMBEDDED
    )
    linked = browser.execute_script(
        "return window.cnnlensReport.rows[arguments[0]].d.index", COUNT - 1
    )
    for index in (embedded[0], linked):
        browser.execute_script(POINTER, "pointermove", *points[index])
        tip = wait_for(browser, "#map-tip:not([hidden])")
        assert tip.text.split("\n")[0] == records[index]["name"]
        assert f"label: {records[index]['label_name']}" in tip.text
        source = tip.find_element("tag name", "img").get_attribute("src")
        if index == linked:  # past the embedded rows: its overlay file
            assert source.endswith(records[index]["overlays"]["grad_cam"])
        else:
            assert source.startswith("data:image/jpeg;base64,")


def _detail(browser: Any) -> dict[str, Any]:
    """The open detail view: its title, full-size overlays and neighbours, once loaded."""
    wait_for(browser, "#detail[open]")
    browser.execute_script(
        "return Promise.all([...document.querySelectorAll('#detail img')]"
        ".map((i) => i.decode().catch(() => null)))"
    )
    found: dict[str, Any] = browser.execute_script(
        """
        const d = document.getElementById("detail");
        return {
          title: document.getElementById("detail-title").textContent,
          overlays: [...d.querySelectorAll("img.full")].map((i) => [i.dataset.method,
            i.naturalWidth, i.naturalHeight, i.getAttribute("src")]),
          neighbours: [...d.querySelectorAll("ol.neighbours a")].map((a) =>
            [a.querySelector("b").textContent, a.getAttribute("href"),
             a.querySelector("img") ? a.querySelector("img").naturalWidth : 0]),
          hash: location.hash,
        };
        """
    )
    return found


def test_every_row_opens_its_detail_view(
    browser: Any, report: Path, records: list[dict[str, Any]]
) -> None:
    _open(browser, report)
    first = browser.execute_script("return window.cnnlensReport.rows[0].d.index")
    browser.find_element("css selector", f"#results a[href='#image-{first}']").click()
    shown = _detail(browser)
    record = records[first]
    assert shown["title"] == record["name"] and shown["hash"] == f"#image-{first}"
    assert shown["overlays"] == [["grad_cam", *OVERLAY_SIZE, record["overlays"]["grad_cam"]]]
    assert [n[0] for n in shown["neighbours"]] == [n["name"] for n in record["neighbors"]]
    assert all(width > 0 for _, _, width in shown["neighbours"])  # each with its picture
    # a neighbour's link opens its own detail
    target = record["neighbors"][0]
    browser.find_element(
        "css selector", f"#detail ol.neighbours a[href='#image-{target['index']}']"
    ).click()
    assert _detail(browser)["title"] == target["name"]
    browser.find_element("id", "detail-close").click()
    assert browser.execute_script("return document.getElementById('detail').open") is False
    # a row past the embedded ones, by a link to it: its overlay from its file
    last = browser.execute_script(
        "return window.cnnlensReport.rows[arguments[0]].d.index", COUNT - 1
    )
    browser.get(report.as_uri() + f"#image-{last}")
    shown = _detail(browser)
    record = records[last]
    assert shown["title"] == record["name"]
    assert shown["overlays"] == [["grad_cam", *OVERLAY_SIZE, record["overlays"]["grad_cam"]]]
    assert [n[0] for n in shown["neighbours"]] == [n["name"] for n in record["neighbors"]]
    assert all(width > 0 for _, _, width in shown["neighbours"])
    assert console_errors(browser) == [] and violations(browser) == []  # under its policy
