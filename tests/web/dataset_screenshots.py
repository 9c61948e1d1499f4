"""Screenshots of the feature-space views (part of make screenshots): the service's report of an
audit of scikit-image crops (its map with a hover card, a row's detail view), and the page's
neighbours of a dropped image and exemplars beside activation max."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from tests.web import dataset_views as views
from tests.web.report_page import open_report
from tests.web.views import wait_for

SHOTS = ("report-map", "report-detail", "audit-neighbours", "activation-exemplars")
QUERY = "chelsea_1"  # dropped on the audit: its own crop comes first
FLIPPED = "chelsea_5.png"  # labelled espresso: the map's hover card and the detail view show it
CHANNEL = 15  # of blocks.2: patches and badges of the astronaut's suit


def _viewport(driver: Any, path: Path, height: int = 820) -> None:
    """The window as it is (not the whole page), as an optimized PNG."""
    driver.set_window_size(1280, height)
    driver.save_screenshot(str(path))
    with Image.open(path) as shot:
        shot.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
            path, optimize=True
        )
    print(f"{path}: {path.stat().st_size} bytes")


def take(driver: Any, url: str, work: Path, out: Path, only: set[str]) -> None:
    """Audit the photo set on the service at `url`, then take the shots named in `only`
    (every one when empty)."""
    from tests.features.photos import crops, write_photo_set

    photos = write_photo_set(work / "photo-set")
    images = {path.name: Image.open(path).convert("RGB") for path in photos.folder.iterdir()}
    labels = {}
    for line in photos.labels.read_text().splitlines():
        name, label = line.split(",")
        labels[name] = int(label)
    job_id = views.service_audit(url, images, labels, exemplars=("blocks.2",), exemplars_k=9)
    wanted = set(SHOTS) if not only else only & set(SHOTS)
    if {"report-map", "report-detail"} & wanted:
        _report(driver, url, job_id, out, wanted)
    if "audit-neighbours" in wanted:
        views.choose_audit(driver, url, job_id)
        views.drop_for_neighbours(driver, crops()[QUERY], f"{QUERY}.png", k=6)
        wait_for(driver, "#neighbours-list .neighbour:last-child img[src^='blob:']")
        driver.execute_script("window.scrollTo(0, 0); document.activeElement.blur()")
        _viewport(driver, out / "audit-neighbours.png", 1320)
    if "activation-exemplars" in wanted:
        views.choose_audit(driver, url, job_id)
        views.activation_with_exemplars(driver, "blocks.2", CHANNEL, steps=32)
        driver.execute_script("window.scrollTo(0, 0); document.activeElement.blur()")
        _viewport(driver, out / "activation-exemplars.png", 1000)
    driver.set_window_size(1280, 1000)


def _report(driver: Any, url: str, job_id: str, out: Path, wanted: set[str]) -> None:
    open_report(driver, f"{url}/v1/audits/{job_id}/report")
    driver.set_window_size(1280, 820)
    index = driver.execute_script(
        "return window.cnnlensReport.rows.find((r) => r.d.name === arguments[0]).d.index",
        FLIPPED,
    )
    if "report-map" in wanted:
        driver.execute_script("document.getElementById('map-heading').scrollIntoView()")
        x, y = driver.execute_script("return window.cnnlensMap.point(arguments[0])", index)
        driver.execute_script(views.POINTER, "pointermove", x, y)
        wait_for(driver, "#map-tip:not([hidden]) img")
        _viewport(driver, out / "report-map.png")
        driver.execute_script(views.POINTER, "pointerleave", x, y)
    if "report-detail" in wanted:
        driver.execute_script("window.cnnlensReport.open(arguments[0])", index)
        wait_for(driver, "#detail[open]")
        driver.execute_script(
            "return Promise.all([...document.querySelectorAll('#detail img')]"
            ".map((i) => i.decode().catch(() => null)))"
        )
        _viewport(driver, out / "report-detail.png", 980)
        driver.execute_script("document.getElementById('detail').close()")
