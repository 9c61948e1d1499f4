"""The explain view on segmentation models in headless Chromium: a region dragged on the image
is sent as `region`, predictions show each class's pixel share, and a center-crop model's
explained box is drawn and named."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.client.live_server import live_server
from tests.ownmodel.segmenters import wrapped_segmenter
from tests.pinned import pinned_app, pinned_settings
from tests.web import views
from tests.web.offline import foreign_requests

pytestmark = pytest.mark.browser

# Records the region field of every form the page posts.
RECORD_REGIONS = """
window.sentRegions = [];
const send = window.fetch;
window.fetch = (path, options = {}) => {
  if (options.body instanceof FormData) window.sentRegions.push([path, options.body.get("region")]);
  return send(path, options);
};
"""


@pytest.fixture(scope="module")
def segmentation_url() -> Iterator[str]:
    """A server with two tiny segmentation models: whole-image resize and center crop."""
    settings = pinned_settings(
        {
            "warmup": False,
            "default_model": "scenes",
            "models": [{"name": "scenes"}, {"name": "cropped"}],
        }
    )
    app = pinned_app(
        settings,
        wrapped_segmenter(32, "scenes"),
        wrapped_segmenter(32, "cropped", resize="center-crop"),
    )
    with live_server(app) as url:
        yield url


def _answer(url: str, image: Path, form: dict[str, str]) -> dict[str, Any]:
    files = {"image": (image.name, image.read_bytes(), "image/png")}
    response = httpx.post(f"{url}/v1/explain", files=files, data=form, timeout=60)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _shown_predictions(driver: Any) -> list[tuple[str, float]]:
    from selenium.webdriver.common.by import By

    items = driver.find_elements(By.CSS_SELECTOR, "#predictions li")
    meters = [item.find_element(By.TAG_NAME, "meter") for item in items]
    assert all(m.get_attribute("aria-label").endswith("pixel share") for m in meters)
    return [
        (
            item.find_element(By.CLASS_NAME, "prediction-label").text,
            float(item.get_attribute("data-pixel-share")),
        )
        for item in items
    ]


def test_a_dragged_region_is_sent_and_pixel_shares_are_shown(
    browser: Any, segmentation_url: str, chelsea_png: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get_log("browser")
    views.segmentation_region(driver, segmentation_url, chelsea_png)  # 451 x 300
    box = [int(driver.find_element(By.ID, f"region-{k}").get_attribute("value")) for k in
           ("x0", "y0", "x1", "y1")]  # fmt: skip
    for got, wanted in zip(box, (0.25 * 451, 0.2 * 300, 0.75 * 451, 0.8 * 300), strict=True):
        assert abs(got - wanted) <= 4, box  # the drag, scaled to the image's own pixels
    driver.execute_script(RECORD_REGIONS)
    views.set_value(driver, "target-input", "sky")
    views.explained(driver)
    region = ",".join(str(v) for v in box)
    assert driver.execute_script("return window.sentRegions") == [["/v1/explain", region]]
    heading = driver.find_element(By.ID, "predictions-heading").text
    assert heading == "Classes present (share of pixels)"
    answer = _answer(
        segmentation_url, chelsea_png, {"method": "grad_cam", "target": "sky", "region": region}
    )
    expected = [(p["label"], p["pixel_share"]) for p in answer["predictions"]]
    shown = _shown_predictions(driver)
    assert [label for label, _ in shown] == [label for label, _ in expected]
    assert [share for _, share in shown] == pytest.approx([s for _, s in expected], abs=1e-6)
    assert sum(share for _, share in shown) == pytest.approx(1.0, abs=1e-4)
    caption = driver.find_element(By.CSS_SELECTOR, "figure[data-method='grad_cam']").text
    assert f"region: {region}" in caption and "sky" in caption
    assert driver.find_element(By.ID, "error").get_attribute("hidden") is not None
    # A box typed outside the image is the service's 422, shown as such.
    views.set_value(driver, "region-x1", "452")
    views.submit(driver, "explain-button")
    error = views.wait_for(driver, "#error:not([hidden])")
    assert error.get_attribute("data-code") == "bad_region"
    assert foreign_requests(driver, segmentation_url) == []


def test_a_center_crop_model_shows_its_explained_box(
    browser: Any, segmentation_url: str, chelsea_png: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser
    driver.get_log("browser")
    views.open_view(driver, segmentation_url, "explain", chelsea_png)
    Select(driver.find_element(By.ID, "model-select")).select_by_value("cropped")
    views.wait_for(driver, "#region-field:not([hidden])")
    views.explained(driver)
    answer = _answer(segmentation_url, chelsea_png, {"model": "cropped", "method": "grad_cam"})
    box = answer["explanations"][0]["explained_box"]
    assert box[0] > 0 and box[2] < 451  # the crop leaves out the left and right borders
    figure = driver.find_element(By.CSS_SELECTOR, "figure[data-method='grad_cam']")
    assert figure.get_attribute("data-explained-box") == ",".join(str(v) for v in box)
    assert "(center crop)" in figure.text
    assert _shown_predictions(driver)  # shares again, for the default region
    assert driver.find_element(By.ID, "error").get_attribute("hidden") is not None
    assert driver.get_log("browser") == []


def test_methods_a_segmentation_model_cannot_serve_are_greyed_out(
    browser: Any, segmentation_url: str, chelsea_png: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    views.open_view(driver, segmentation_url, "explain", chelsea_png)
    views.wait_for(driver, "#region-field:not([hidden])")
    methods = httpx.get(f"{segmentation_url}/v1/methods", timeout=30).json()["methods"]
    refused = {m["name"] for m in methods if not m["segmentation"]} | {"cam"}
    assert {"score_cam", "cam"} <= refused
    for prefix in ("method-", "compare-method-", "audit-method-"):
        for method in methods:
            boxes = driver.find_elements(By.ID, f"{prefix}{method['name']}")
            if not boxes:  # image, activation and weights methods have views of their own
                continue
            box = boxes[0]
            assert box.get_attribute("disabled") == ("true" if method["name"] in refused else None)
            if method["name"] in refused:
                label = box.find_element(By.XPATH, "following-sibling::label")
                reason = label.get_attribute("title")
                detector_only = method["explains"] == ["detection"]  # d_rise
                said = ("object detectors",) if detector_only else ("segmentation", "linear head")
                assert any(words in reason for words in said), reason
    # The service refuses them too: the page only says so first.
    files = {"image": (chelsea_png.name, chelsea_png.read_bytes(), "image/png")}
    for name in ("cam", "score_cam"):
        response = httpx.post(
            f"{segmentation_url}/v1/explain", files=files, data={"method": name}, timeout=60
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "incompatible_model"
