"""The explain view on a detector in headless Chromium: every detection is listed and drawn
with its box, and a click on a box explains that detection (box= is sent)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cnnlens
from tests.client.live_server import live_server
from tests.detection.conftest import BLUE_BOX, RED_AND_BLUE
from tests.detection.detectors import LABELS, PREPROCESSING, SquareDetector, square_image
from tests.pinned import pinned_app, pinned_settings
from tests.web import views
from tests.web.conftest import browser  # noqa: F401  (the headless Chromium fixture)
from tests.web.offline import foreign_requests

pytestmark = pytest.mark.browser
SCALE = 3  # the upload is 384 x 384: the page works in the upload's pixels

# Records the box field of every form the page posts.
RECORD_BOXES = """
window.sentBoxes = [];
const send = window.fetch;
window.fetch = (path, options = {}) => {
  if (options.body instanceof FormData) window.sentBoxes.push([path, options.body.get("box")]);
  return send(path, options);
};
"""


@pytest.fixture(scope="module")
def detector_url() -> Iterator[str]:
    settings = pinned_settings(
        {"warmup": False, "default_model": "squares", "models": [{"name": "squares"}]}
    )
    model = cnnlens.wrap(
        SquareDetector().eval(), labels=LABELS, preprocessing=PREPROCESSING, name="squares"
    )
    with live_server(pinned_app(settings, model)) as url:
        yield url


@pytest.fixture(scope="module")
def squares_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    picture = square_image(RED_AND_BLUE)
    path = tmp_path_factory.mktemp("detections") / "squares.png"
    picture.resize((picture.width * SCALE, picture.height * SCALE)).save(path)
    return path


def test_detections_are_drawn_and_a_click_explains_one(
    browser: Any,  # noqa: F811
    detector_url: str,
    squares_png: Path,
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    driver.get_log("browser")
    views.open_view(driver, detector_url, "explain", squares_png)
    # Methods that read class logits are greyed out for a detector.
    score_cam = driver.find_element(By.CSS_SELECTOR, 'input[name="method"][value="score_cam"]')
    assert score_cam.get_attribute("disabled") is not None
    driver.execute_script(RECORD_BOXES)
    views.explained(driver)
    heading = driver.find_element(By.ID, "predictions-heading").text
    assert heading.startswith("Detections")
    items = driver.find_elements(By.CSS_SELECTOR, "#predictions li.detection")
    assert [item.find_element(By.CLASS_NAME, "prediction-label").text for item in items] == [
        "red",
        "blue",
    ]
    figures = driver.find_elements(By.CSS_SELECTOR, "figure[data-method='grad_cam']")
    assert len(figures) == 2  # one map per detection
    driver.save_screenshot(str(tmp_path / "detections.png"))
    # A click inside the blue square's box, on the first map, explains the blue detection.
    canvas = figures[0].find_element(By.TAG_NAME, "canvas")
    width = canvas.size["width"]
    center = [(BLUE_BOX[0] + BLUE_BOX[2]) / 2, (BLUE_BOX[1] + BLUE_BOX[3]) / 2]
    offset = [v * SCALE * width / (128 * SCALE) - width / 2 for v in center]
    ActionChains(driver).move_to_element_with_offset(canvas, *offset).click().perform()
    one_map = "figure[data-method='grad_cam']"
    WebDriverWait(driver, views.TIMEOUT_S).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, f"{one_map} canvas[data-ready]")) == 1
    )
    sent = driver.execute_script("return window.sentBoxes")
    expected = ",".join(f"{v * SCALE:.1f}" for v in BLUE_BOX)
    assert sent[-1] == ["/v1/explain", expected]
    (figure,) = driver.find_elements(By.CSS_SELECTOR, one_map)
    assert figure.get_attribute("data-box") == ",".join(f"{v * SCALE:g}" for v in BLUE_BOX)
    assert "blue" in figure.text
    driver.save_screenshot(str(tmp_path / "clicked.png"))
    assert driver.find_element(By.ID, "error").get_attribute("hidden") is not None
    assert foreign_requests(driver, detector_url) == []
    assert driver.get_log("browser") == []
