"""The page reads in the task's order, shows errors where the user looks, and keeps photos'
shapes: what a newcomer tripped on, checked in headless Chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cnnlens.api.forms import COMPARE_METHODS
from cnnlens.compare.options import CompareOptions
from tests.web import views

pytestmark = pytest.mark.browser

# Where an element sits relative to the viewport, and whether `first` precedes `second`.
RECT = "const r = arguments[0].getBoundingClientRect(); return [r.top, r.bottom, innerHeight];"
PRECEDES = "return Boolean(arguments[0].compareDocumentPosition(arguments[1]) & 4);"
CLICK_IN_VIEW = "arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();"

# A tile canvas's pixels, (height, width, 3), read in the page.
PIXELS = """
const canvas = arguments[0];
const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
const rgb = [];
for (let i = 0; i < data.length; i += 4) rgb.push(data[i], data[i + 1], data[i + 2]);
return [canvas.width, canvas.height, rgb];
"""


@pytest.mark.parametrize(
    ("view", "button"), [("explain", "explain-button"), ("compare", "compare-button")]
)
def test_target_and_layer_come_before_the_button(
    browser: Any, server_url: str, view: str, button: str
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    views.open_view(driver, server_url, view, None)
    pressed = driver.find_element(By.ID, button)
    assert pressed.is_displayed()
    for field in ("target-input", "layer-select", "params-input"):
        element = driver.find_element(By.ID, field)
        assert driver.execute_script(PRECEDES, element, pressed), f"{field} after the button"
    methods = driver.find_element(By.ID, "methods-list" if view == "explain" else "compare-methods")
    assert driver.execute_script(PRECEDES, methods, pressed)
    # Only the view's own button is shown.
    shown = [
        b.get_attribute("id")
        for b in driver.find_elements(By.CSS_SELECTOR, ".view-action button")
        if b.is_displayed()
    ]
    assert shown == [button]


def test_a_failed_explain_shows_its_error_in_sight(
    browser: Any, server_url: str, chelsea_png: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    driver.set_window_size(1280, 857)  # the laptop screen the error once fell below
    try:
        views.open_view(driver, server_url, "explain", chelsea_png)
        for name in ("saliency", "guided_backprop", "occlusion"):  # a longer form
            box = driver.find_element(By.ID, f"method-{name}")
            driver.execute_script(CLICK_IN_VIEW, box)
        views.set_value(driver, "target-input", "egyptian kat")
        driver.execute_script("window.scrollTo(0, 0)")  # the page as it first shows
        button = driver.find_element(By.ID, "explain-button")
        _in_sight(driver, button)  # the controls end at the window's edge: no scrolling
        views.submit(driver, "explain-button")
        error = views.wait_for(driver, "#error:not([hidden])")
        _in_sight(driver, error)
        assert error.get_attribute("data-code") == "bad_target"
        assert "did you mean 'Egyptian cat'" in error.text
        button = driver.find_element(By.ID, "explain-button")
        assert driver.execute_script(PRECEDES, button, error)  # right under the button
    finally:
        driver.set_window_size(1280, 1000)


def _in_sight(driver: Any, element: Any) -> None:
    """Within the window's height, once the page has laid out (the controls fit themselves to
    the window on the next frame after a scroll)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    def inside(_: Any) -> bool:
        top, bottom, height = driver.execute_script(RECT, element)
        return bool(top >= 0 and bottom <= height)

    try:
        WebDriverWait(driver, 5).until(inside)
    except TimeoutException:
        raise AssertionError(f"out of sight: {driver.execute_script(RECT, element)}") from None


def test_compare_defaults_are_the_library_s_and_tiles_keep_the_whole_photo(
    browser: Any, server_url: str, chelsea_png: Path, chelsea: Image.Image
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser
    views.open_view(driver, server_url, "compare", chelsea_png)
    checked = driver.find_elements(By.CSS_SELECTOR, "#compare-methods input:checked")
    assert sorted(box.get_attribute("value") for box in checked) == sorted(COMPARE_METHODS)
    scores = Select(driver.find_element(By.ID, "compare-scores")).first_selected_option
    assert scores.get_attribute("value") == ",".join(CompareOptions().scores)
    Select(driver.find_element(By.ID, "compare-scores")).select_by_value("none")  # fast
    views.submit(driver, "compare-button")
    views.result_of(driver, "compare")
    tiles = driver.find_elements(By.CSS_SELECTOR, "#compare-grid .tile canvas")
    assert len(tiles) == 1 + len(COMPARE_METHODS)
    width, height, rgb = driver.execute_script(PIXELS, tiles[0])
    assert abs(width / height - 451 / 300) < 0.02  # drawn at the photo's aspect
    drawn = np.asarray(rgb, dtype=np.float64).reshape(height, width, 3)
    photo = np.asarray(chelsea.convert("RGB").resize((width, height)), dtype=np.float64)
    # The whole photo, neither cropped nor stretched: the tile matches it pixel for pixel
    # (the square cut of a 224 x 149 tile the page once took correlated at 0.49).
    correlation = np.corrcoef(drawn.ravel(), photo.ravel())[0, 1]
    assert correlation > 0.95, correlation
    assert np.abs(drawn - photo).mean() < 12
