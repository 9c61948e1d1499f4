"""Screenshots of every view of the web page, for docs/screenshots (make screenshots).

Serves the app with the default model on a loopback port and drives each view in headless
Chromium with the network off, as the browser tests do.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from tests.web import dataset_screenshots, views
from tests.web.browser import missing, start_browser

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def _photo(name: str) -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, name)())


def _save(driver: Any, path: Path) -> None:
    """The whole page (height as laid out), as an optimized PNG."""
    height, chrome = driver.execute_script(
        "return [document.documentElement.scrollHeight, outerHeight - innerHeight]"
    )  # the window's own bars take part of its height: the page needs its height below them
    driver.set_window_size(1280, max(1000, min(int(height) + int(chrome) + 20, 2400)))
    driver.execute_script("window.scrollTo(0, 0); document.activeElement.blur();")
    driver.save_screenshot(str(path))
    with Image.open(path) as shot:
        shot.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
            path, optimize=True
        )
    driver.set_window_size(1280, 1000)


def main(out: Path = OUT) -> int:
    reason = missing()
    if reason is not None:
        print(reason, file=sys.stderr)
        return 1
    from cnnlens.models import load_model
    from tests.client.conftest import make_app
    from tests.client.live_server import live_server

    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="cnnlens-screenshots-"))
    chelsea = work / "chelsea.png"
    _photo("chelsea").save(chelsea)
    archive = views.audit_archive(
        work, {"chelsea.png": _photo("chelsea"), "coffee.png": _photo("coffee")}
    )
    shots: dict[str, Callable[[Any, str], None]] = {
        "explain": lambda d, u: views.explain(
            d, u, chelsea, ["grad_cam", "guided_backprop", "occlusion", "saliency"]
        ),
        "adversarial": lambda d, u: views.adversarial(d, u, chelsea),
        "activation-max": lambda d, u: views.activation_max(d, u, "285"),
        "feature-maps": lambda d, u: views.feature_maps(d, u, chelsea),
        "filters": lambda d, u: views.filters(d, u),
        "compare": lambda d, u: views.compare(d, u, chelsea),
        "audit": lambda d, u: views.audit(d, u, archive),
    }
    only = set(sys.argv[1:])
    settings = {"data_dir": str(work / "data")}
    with live_server(make_app(load_model("efficientnet_lite0"), **settings)) as url:
        driver = start_browser()
        try:
            for name, drive in shots.items():
                if only and name not in only:
                    continue
                drive(driver, url)
                _save(driver, out / f"{name}.png")
                print(f"{out / f'{name}.png'}: {(out / f'{name}.png').stat().st_size} bytes")
        finally:
            driver.quit()
    if not only or "segmentation" in only:
        _segmentation(chelsea, out / "segmentation.png")
    if not only or only & set(dataset_screenshots.SHOTS):
        _dataset(work, out, only)
    return 0


def _dataset(work: Path, out: Path, only: set[str]) -> None:
    """The feature-space views: the report's map and detail view, the page's neighbours and
    exemplars, from an audit of scikit-image crops on a service of their own."""
    from cnnlens.models import load_model
    from tests.client.conftest import make_app
    from tests.client.live_server import live_server

    settings = {"data_dir": str(work / "dataset-data")}
    with live_server(make_app(load_model("efficientnet_lite0"), **settings)) as url:
        driver = start_browser()
        try:
            dataset_screenshots.take(driver, url, work, out, only)
        finally:
            driver.quit()


def _segmentation(image: Path, path: Path) -> None:
    """The explain view of a small segmentation model made here, with a region dragged."""
    from tests.client.live_server import live_server
    from tests.ownmodel.segmenters import wrapped_segmenter
    from tests.pinned import pinned_app, pinned_settings

    settings = pinned_settings(
        {"warmup": False, "default_model": "scenes", "models": [{"name": "scenes"}]}
    )
    with live_server(pinned_app(settings, wrapped_segmenter(64))) as url:
        driver = start_browser()
        try:
            views.segmentation_region(driver, url, image)
            views.explained(driver)
            _save(driver, path)
            print(f"{path}: {path.stat().st_size} bytes")
        finally:
            driver.quit()


if __name__ == "__main__":
    raise SystemExit(main())
