"""A report of 20 000 images stays under 15 MB, and opens, pages and filters in Chromium."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from cnnlens.audit.report import EMBEDDED_ROWS, render_report
from cnnlens.audit.summary import summarize
from tests.audit.test_report import browser  # noqa: F401  (the shared Chromium fixture)

COUNT = 20_000


def _records() -> list[dict[str, Any]]:
    records = []
    for index in range(COUNT):
        flags = ["low_confidence"] if index % 7 == 0 else []
        records.append(
            {
                "index": index,
                "name": f"img{index:06d}.png",
                "status": "ok",
                "label": None,
                "predicted": index % 4,
                "predicted_name": f"class{index % 4}",
                "confidence": (index % 100) / 100,
                "correct": None,
                "flags": flags,
                "maps": {
                    "grad_cam": {"degenerate": False, "box_energy": None, "pointing_hit": None}
                },
                "overlays": {"grad_cam": f"overlays/{index:05d}_img_grad_cam.png"},
                "fragility_tested": False,
                "fragile_epsilon": None,
            }  # fmt: skip
        )
    return records


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buffer, format="JPEG", quality=82)
    return buffer.getvalue()


def test_report_of_20000_images(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    records = _records()
    thumb = _jpeg()
    html = render_report(
        job={"id": "big", "model": "tiny", "methods": ["grad_cam"], "status": "done"},
        records=records, summary=summarize(records),
        thumbnails={r["index"]: thumb for r in records},
        overlays={r["index"]: {"grad_cam": thumb} for r in records}, class_means=[],
    )  # fmt: skip
    path = tmp_path / "index.html"
    path.write_text(html, encoding="utf-8")
    assert path.stat().st_size < 15 * 1024 * 1024
    assert html.count("data:image/jpeg") == 2 * EMBEDDED_ROWS  # the rest link their files
    browser.get(path.as_uri())
    assert browser.find_element(By.ID, "shown").text == f"{COUNT} of {COUNT} images"
    visible = browser.execute_script(
        "return Array.from(document.querySelectorAll('#results tbody tr'))"
        ".filter(r => r.style.display !== 'none').length"
    )
    assert visible == 100  # one page
    elapsed = browser.execute_script(
        "const t = performance.now(); const s = document.getElementById('search');"
        "s.value = 'img01999'; s.dispatchEvent(new Event('input'));"
        "return performance.now() - t;"
    )
    assert browser.find_element(By.ID, "shown").text == f"10 of {COUNT} images"
    loaded = browser.execute_script(
        "const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd;"
    )
    assert elapsed < 5000 and loaded < 30000  # generous: a shared, busy machine
