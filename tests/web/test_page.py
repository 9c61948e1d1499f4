"""The web page in real headless Chromium: upload chelsea, run Grad-CAM, read the results."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.web import views

pytestmark = pytest.mark.browser

TIMEOUT_S = 20

# Mean RGB of the first result canvas, read in the page (the canvas is same-origin: no taint).
CANVAS_STATS = """
const canvas = document.querySelector(arguments[0]);
const {width, height} = canvas;
const data = canvas.getContext("2d").getImageData(0, 0, width, height).data;
let r = 0, g = 0, b = 0;
for (let i = 0; i < data.length; i += 4) { r += data[i]; g += data[i + 1]; b += data[i + 2]; }
const n = data.length / 4;
return {width, height, mean: [r / n, g / n, b / n]};
"""

# Run a link's click handlers but cancel the browser's download itself.
CLICK_WITHOUT_DOWNLOADING = """
document.addEventListener("click", (event) => event.preventDefault(), {capture: true, once: true});
arguments[0].click();
"""

# Drop a PNG (base64) on the drop zone as a user dragging a file would.
DROP_FILE = """
const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
const transfer = new DataTransfer();
transfer.items.add(new File([bytes], arguments[1], {type: "image/png"}));
const zone = document.getElementById("drop-zone");
const init = {dataTransfer: transfer, bubbles: true, cancelable: true};
zone.dispatchEvent(new DragEvent("dragover", init));
zone.dispatchEvent(new DragEvent("drop", init));
"""

SET_OPACITY = """
const slider = document.getElementById("opacity");
slider.value = arguments[0];
slider.dispatchEvent(new Event("input", {bubbles: true}));
"""


def _wait(driver: Any, css: str) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as expected
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, TIMEOUT_S).until(
            expected.presence_of_element_located((By.CSS_SELECTOR, css))
        )
    except TimeoutException:
        errors = [entry["message"] for entry in driver.get_log("browser")]
        raise AssertionError(f"{css!r} did not appear; browser console: {errors}") from None


def _explain(driver: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as expected
    from selenium.webdriver.support.ui import WebDriverWait

    button = WebDriverWait(driver, TIMEOUT_S).until(
        expected.element_to_be_clickable((By.ID, "explain-button"))
    )
    driver.execute_script('document.getElementById("gallery").replaceChildren();')
    button.click()


def test_upload_grad_cam_overlay_and_top_prediction(
    browser: Any, server_url: str, chelsea_png: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get_log("browser")  # drop what earlier tests left in the console
    driver.get(server_url + "/")
    assert driver.title.startswith("cnnlens")
    _wait(driver, "body[data-ready='true']")

    # The controls come from the API: the default model, Grad-CAM checked, its default layer,
    # and the searchable class list.
    model = driver.find_element(By.ID, "model-select")
    assert model.get_attribute("value") == "efficientnet_lite0"
    assert driver.find_element(By.ID, "method-grad_cam").is_selected()
    assert not driver.find_element(By.ID, "method-saliency").is_selected()
    assert driver.find_element(By.ID, "layer-select").get_attribute("value") == "bn2"
    classes = driver.find_elements(By.CSS_SELECTOR, "#categories-list option")
    assert len(classes) == 1000
    assert classes[285].get_attribute("value") == "285: Egyptian cat"

    driver.find_element(By.ID, "image-input").send_keys(str(chelsea_png))
    _wait(driver, "#preview:not([hidden])")
    assert "451×300" in driver.find_element(By.ID, "image-status").text
    _explain(driver)

    overlay = _wait(driver, "figure[data-method='grad_cam'] canvas.overlay[data-ready='true']")
    assert overlay.get_attribute("role") == "img"
    predictions = driver.find_elements(By.CSS_SELECTOR, "#predictions .prediction-label")
    assert len(predictions) == 5
    assert predictions[0].text == "Egyptian cat"
    caption = driver.find_element(By.CSS_SELECTOR, "figure[data-method='grad_cam'] figcaption")
    assert "target: Egyptian cat (285" in caption.text and "layer: bn2" in caption.text
    assert driver.find_element(By.ID, "error").get_attribute("hidden") is not None

    # The overlay is drawn at the image's size; the opacity slider blends original and heatmap.
    selector = "figure[data-method='grad_cam'] canvas.overlay"
    original = _stats(driver, selector, 0)
    heatmap = _stats(driver, selector, 100)
    halfway = _stats(driver, selector, 50)
    assert (original["width"], original["height"]) == (451, 300)
    assert max(abs(h - o) for h, o in zip(heatmap["mean"], original["mean"], strict=True)) > 10
    for h, o, m in zip(heatmap["mean"], original["mean"], halfway["mean"], strict=True):
        assert abs(m - (h + o) / 2) < 3  # linear blend

    # Downloads: the service's overlay and heatmap, and the view at the slider's opacity.
    links = driver.find_elements(By.CSS_SELECTOR, "figure[data-method='grad_cam'] a.download")
    by_name = {link.get_attribute("download"): link for link in links}
    assert set(by_name) == {
        "chelsea_grad_cam_285_overlay.png",
        "chelsea_grad_cam_285_heatmap.png",
        "chelsea_grad_cam_285_view.png",
    }
    for name in ("chelsea_grad_cam_285_overlay.png", "chelsea_grad_cam_285_heatmap.png"):
        assert _png(by_name[name].get_attribute("href")).size == (451, 300)
    driver.execute_script(SET_OPACITY, 100)
    driver.execute_script(CLICK_WITHOUT_DOWNLOADING, by_name["chelsea_grad_cam_285_view.png"])
    view = _png(by_name["chelsea_grad_cam_285_view.png"].get_attribute("href"))
    assert view.size == (451, 300)
    view_mean = np.asarray(view.convert("RGB"), dtype=np.float64).mean(axis=(0, 1))
    np.testing.assert_allclose(view_mean, heatmap["mean"], atol=0.5)
    assert driver.get_log("browser") == []  # no script error, no failed request


def _png(data_url: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix)
    picture = Image.open(io.BytesIO(base64.b64decode(data_url[len(prefix) :])))
    assert picture.format == "PNG"
    return picture


def _stats(driver: Any, selector: str, opacity: int) -> dict[str, Any]:
    driver.execute_script(SET_OPACITY, opacity)
    stats: dict[str, Any] = driver.execute_script(CANVAS_STATS, selector)
    return stats


def test_dropped_image_two_methods_side_by_side_for_a_chosen_target(
    browser: Any, server_url: str, chelsea_png: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get(server_url + "/")
    _wait(driver, "body[data-ready='true']")
    encoded = base64.b64encode(chelsea_png.read_bytes()).decode("ascii")
    driver.execute_script(DROP_FILE, encoded, "dropped cat.png")
    _wait(driver, "#preview:not([hidden])")
    assert driver.find_element(By.ID, "image-status").text.startswith("dropped cat.png: 451×300")
    views.click_in_view(driver, driver.find_element(By.ID, "method-saliency"))
    driver.find_element(By.ID, "target-input").send_keys("281: tabby")
    _explain(driver)

    _wait(driver, "figure[data-method='saliency'] canvas.overlay[data-ready='true']")
    figures = driver.find_elements(By.CSS_SELECTOR, "#gallery figure")
    assert [f.get_attribute("data-method") for f in figures] == ["grad_cam", "saliency"]
    for figure in figures:
        assert "target: tabby (281" in figure.text
    first, second = (f.rect for f in figures)
    assert abs(first["y"] - second["y"]) < 1 and second["x"] > first["x"]  # side by side
    labels = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".prediction-label")]
    assert labels[0] == "Egyptian cat" and "tabby" in labels


def test_errors_are_shown_not_swallowed(browser: Any, server_url: str, chelsea_png: Path) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get(server_url + "/")
    _wait(driver, "body[data-ready='true']")
    driver.find_element(By.ID, "image-input").send_keys(str(chelsea_png))
    _wait(driver, "#preview:not([hidden])")
    driver.find_element(By.ID, "target-input").send_keys("no such class")
    _explain(driver)
    error = _wait(driver, "#error:not([hidden])")
    assert error.get_attribute("data-code") == "bad_target"
    assert "Error 422 (bad_target)" in error.text
