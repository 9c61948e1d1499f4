"""The HTML report: self-contained, flagged rows first, and (in headless Chromium) its table
sorts by a clicked column and filters by text and flag."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnnlens.audit.report import render_report
from cnnlens.audit.summary import class_mean_maps, summarize


def _record(index: int, name: str, label: int, predicted: int, confidence: float) -> dict[str, Any]:
    names = {0: "tench", 1: "goldfish", 285: "Egyptian cat"}
    flags = [] if label == predicted else ["misclassified"]
    if confidence < 0.5:
        flags.append("low_confidence")
    return {
        "index": index, "name": name, "status": "ok", "label": label, "label_name": names[label],
        "predicted": predicted, "predicted_name": names[predicted], "confidence": confidence,
        "correct": label == predicted, "flags": flags, "maps": {"grad_cam": {}},
        "fragility_tested": False, "fragile_epsilon": None,
    }  # fmt: skip


RECORDS = [
    _record(0, "cat_one.png", 285, 285, 0.9),
    _record(1, "fish.png", 1, 0, 0.8),
    _record(2, "cat_two.png", 285, 285, 0.3),
    {
        "index": 3,
        "name": "broken.png",
        "status": "error",
        "error": "cannot decode",
        "label": None,
        "flags": ["error"],
        "maps": {},
        "predictions": [],
    },  # fmt: skip
]


def _html() -> str:
    maps = {r["index"]: np.full((56, 56), 0.5, dtype=np.float16).tobytes() for r in RECORDS[:3]}
    return render_report(
        job={"id": "abc", "model": "m", "methods": ["grad_cam"], "status": "done"},
        records=RECORDS,
        summary=summarize(RECORDS),
        thumbnails={},
        overlays={},
        class_means=class_mean_maps(RECORDS, maps),
    )


def test_summary_values() -> None:
    summary = summarize(RECORDS)
    assert summary["accuracy"] == pytest.approx(2 / 3)
    assert summary["errors"] == 1 and summary["flagged"] == 3
    assert summary["confusion_pairs"] == [
        {
            "label": 1,
            "label_name": "goldfish",
            "predicted": 0,
            "predicted_name": "tench",
            "count": 1,
        }
    ]
    assert [c["name"] for c in summary["per_class"]] == ["goldfish", "Egyptian cat"]
    assert summary["confident_mistakes"][0]["name"] == "fish.png"
    means = class_mean_maps(RECORDS, {0: np.ones((56, 56), np.float16).tobytes(),
                                      2: np.zeros((56, 56), np.float16).tobytes()})  # fmt: skip
    assert means[0]["name"] == "Egyptian cat" and means[0]["n"] == 2
    assert np.allclose(means[0]["map"], 0.5)


def test_report_is_self_contained() -> None:
    html = _html()
    assert "http://" not in html and "https://" not in html
    assert html.count("<svg") >= 2 and "data:image/png;base64," in html  # class-mean maps
    table = html[html.index("id='results'") :]
    order = [table.index(name) for name in ("fish.png", "cat_two.png", "broken.png", "cat_one.png")]
    assert order == sorted(order)  # two flags, then one (in input order), then none


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium") or shutil.which("google-chrome")
    chromedriver = shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        if os.environ.get("CNNLENS_REQUIRE_BROWSER"):  # set by CI: the test must run there
            pytest.fail("chromium and chromedriver are not installed")
        pytest.skip("chromium and chromedriver are not installed")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.browser
def test_report_sorts_and_filters_in_a_browser(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    path = tmp_path / "index.html"
    path.write_text(_html(), encoding="utf-8")
    browser.get(path.as_uri())

    def visible_names() -> list[str]:
        rows = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")
        return [row.find_elements(By.TAG_NAME, "td")[3].text for row in rows if row.is_displayed()]

    assert visible_names() == ["fish.png", "cat_two.png", "broken.png", "cat_one.png"]
    assert browser.find_element(By.ID, "shown").text == "4 of 4 images"
    header = next(
        th
        for th in browser.find_elements(By.CSS_SELECTOR, "#results th")
        if th.text.startswith("confidence")
    )
    header.click()  # ascending; the error row has no confidence and sorts first
    assert visible_names() == ["broken.png", "cat_two.png", "fish.png", "cat_one.png"]
    header.click()
    assert visible_names() == ["cat_one.png", "fish.png", "cat_two.png", "broken.png"]
    Select(browser.find_element(By.ID, "flag")).select_by_value("misclassified")
    assert visible_names() == ["fish.png"]
    Select(browser.find_element(By.ID, "flag")).select_by_value("flagged")
    assert sorted(visible_names()) == ["broken.png", "cat_two.png", "fish.png"]
    Select(browser.find_element(By.ID, "flag")).select_by_value("all")
    browser.find_element(By.ID, "search").send_keys("egyptian")
    assert sorted(visible_names()) == ["cat_one.png", "cat_two.png"]
    assert browser.find_element(By.ID, "shown").text == "2 of 4 images"
