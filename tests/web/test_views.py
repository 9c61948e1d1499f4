"""Every view of the web page in headless Chromium, network off: each answer is shown, and the
page loads nothing but its own origin."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.web import views
from tests.web.offline import foreign_requests

pytestmark = pytest.mark.browser


def _done(driver: Any, server_url: str) -> None:
    """Nothing fetched from another host, no script error, no error shown."""
    from selenium.webdriver.common.by import By

    assert foreign_requests(driver, server_url) == []
    assert driver.find_element(By.ID, "error").get_attribute("hidden") is not None
    assert driver.get_log("browser") == []


def test_explain_draws_jet_maps_with_a_legend_of_range_and_sign(
    browser: Any, server_url: str, chelsea_png: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get_log("browser")
    views.explain(driver, server_url, chelsea_png, ["grad_cam", "guided_backprop"])
    for name in ("grad_cam", "guided_backprop"):
        figure = driver.find_element(By.CSS_SELECTOR, f"figure[data-method='{name}']")
        legend = figure.find_element(By.CSS_SELECTOR, ".legend-range").text
        assert legend.startswith("non-negative · range "), legend
        low, high = (float(v) for v in legend.split("range ")[1].split(" … "))
        assert 0 <= low < high
    # Guided backprop is shown in the API's jet, not as an RGB map: at full opacity the
    # canvas's pixels are jet colours (of the 256-entry table the page and render.py share).
    jet_share = driver.execute_script(
        """
        const slider = document.getElementById("opacity");
        slider.value = 100; slider.dispatchEvent(new Event("input"));
        const canvas = document.querySelector("figure[data-method='guided_backprop'] canvas");
        const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        const jet = new Set();
        for (let k = 0; k < 256; k++) jet.add(JET_TABLE.slice(3 * k, 3 * k + 3).join(","));
        let hits = 0;
        for (let i = 0; i < data.length; i += 4) {
            hits += jet.has(`${data[i]},${data[i + 1]},${data[i + 2]}`);
        }
        return hits / (data.length / 4);
        """
    )
    assert jet_share > 0.99
    _done(driver, server_url)


def test_adversarial_shows_prediction_before_after_and_the_perturbation(
    browser: Any, server_url: str, chelsea_png: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    views.adversarial(driver, server_url, chelsea_png)
    assert driver.find_element(By.ID, "adv-before").text.startswith("Before: Egyptian cat (285")
    after = driver.find_element(By.ID, "adv-after").text
    assert after.startswith("After: ")
    success = driver.find_element(By.ID, "adversarial-results").get_attribute("data-success")
    assert ("Egyptian cat" not in after) == (success == "true")
    assert "largest change" in driver.find_element(By.ID, "adv-perturbation-caption").text
    # The 224x224 answer is shown at the photo's 451:300 aspect.
    image = driver.find_element(By.ID, "adv-image").rect
    assert abs(image["width"] / image["height"] - 451 / 300) < 0.02
    _done(driver, server_url)


def test_activation_max_synthesizes_an_image_for_the_class(browser: Any, server_url: str) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    views.activation_max(driver, server_url, "285")
    assert "class Egyptian cat (285" in driver.find_element(By.ID, "act-summary").text
    assert driver.execute_script("return document.getElementById('act-image').naturalWidth") == 224
    assert driver.find_element(By.ID, "act-caption").text.startswith("The model sees: ")
    assert driver.find_element(By.ID, "activation-button").is_enabled()  # ready to run again
    _done(driver, server_url)


def test_feature_maps_grid_with_gaps_and_the_top_channels(
    browser: Any, server_url: str, chelsea_png: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    views.feature_maps(driver, server_url, chelsea_png)
    tiles = driver.find_elements(By.CSS_SELECTOR, "#feat-tiles .tile")
    rows = driver.find_elements(By.CSS_SELECTOR, "#feat-table tr")
    assert len(tiles) == len(rows) == 16
    means = [float(r.find_elements(By.TAG_NAME, "td")[0].text) for r in rows]
    assert means == sorted(means, reverse=True)  # strongest first
    assert [t.text for t in tiles] == [f"#{r.find_element(By.TAG_NAME, 'th').text}" for r in rows]
    _assert_gaps(tiles)
    _done(driver, server_url)


def test_filters_tiles_of_the_first_convolution_with_gaps(browser: Any, server_url: str) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    views.filters(driver, server_url)
    summary = driver.find_element(By.ID, "filters-summary").text
    assert summary.startswith("conv_stem: weights 32×3×3×3"), summary
    tiles = driver.find_elements(By.CSS_SELECTOR, "#filters-tiles .tile")
    assert [t.text for t in tiles] == [str(c) for c in range(32)]
    _assert_gaps(tiles)
    assert driver.find_element(By.ID, "filters-button").is_enabled()
    _done(driver, server_url)


def test_compare_grid_keeps_the_photo_aspect_and_shows_scores(
    browser: Any, server_url: str, chelsea_png: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    views.compare(driver, server_url, chelsea_png)
    tiles = driver.find_elements(By.CSS_SELECTOR, "#compare-grid .tile canvas")
    assert len(tiles) == 4  # the photo, then the default methods: saliency, Grad-CAM, GBP
    for tile in tiles:
        assert abs(tile.rect["width"] / tile.rect["height"] - 451 / 300) < 0.03
    rows = driver.find_elements(By.CSS_SELECTOR, "#compare-scores-table tr")
    titles = [r.find_element(By.TAG_NAME, "th").text for r in rows]
    assert sorted(titles) == ["Grad-CAM", "Gradient saliency", "Guided backpropagation"]
    for row in rows:
        deletion, insertion = (float(c.text) for c in row.find_elements(By.TAG_NAME, "td")[:2])
        assert 0 <= deletion <= 1 and 0 <= insertion <= 1
    head = driver.find_elements(By.CSS_SELECTOR, "#compare-scores-head th")
    assert [cell.text for cell in head] == ["method", "deletion AUC ↓", "insertion AUC ↑"]
    protocol = driver.find_element(By.ID, "compare-protocol").text
    assert "baseline rise" in protocol and "11×11 σ=5 (zeros padding)" in protocol
    spearman = driver.find_element(By.CSS_SELECTOR, "#compare-agreement td").text
    assert -1 <= float(spearman) <= 1
    _done(driver, server_url)


def test_compare_table_shows_the_scores_asked_for_and_their_protocol(
    browser: Any, server_url: str, chelsea_png: Path
) -> None:
    """The table has a column per score asked for, named and arrowed as the API's scores,
    with the values of the answer; the protocol line adds those scores' settings."""
    from selenium.webdriver.common.by import By

    driver = browser
    scores = "deletion,insertion,infidelity,sensitivity_max,sparseness,complexity"
    views.compare(driver, server_url, chelsea_png, scores)
    head = driver.find_elements(By.CSS_SELECTOR, "#compare-scores-head th")
    assert [cell.text for cell in head] == [
        "method", "deletion AUC ↓", "insertion AUC ↑", "infidelity ↓", "max-sensitivity ↓",
        "sparseness ↑", "complexity ↓",
    ]  # fmt: skip
    rows = driver.find_elements(By.CSS_SELECTOR, "#compare-scores-table tr")
    cells = {
        row.find_element(By.TAG_NAME, "th").text: [
            float(cell.text) for cell in row.find_elements(By.TAG_NAME, "td")
        ]
        for row in rows
    }
    # The page's default methods are the library's (saliency, grad_cam, guided_backprop).
    assert set(cells) == {"Grad-CAM", "Gradient saliency", "Guided backpropagation"}
    for values in cells.values():
        deletion, insertion, infidelity, sensitivity, sparseness, complexity = values
        assert 0 <= deletion <= 1 and 0 <= insertion <= 1 and infidelity >= 0
        assert 0 < sparseness < 1 and 0 < complexity <= math.log(224 * 224) + 1e-3
    # Yeh et al.'s observation, as the page shows it: Grad-CAM is far less sensitive.
    assert cells["Grad-CAM"][3] < cells["Gradient saliency"][3]
    protocol = driver.find_element(By.ID, "compare-protocol").text
    assert "infidelity: 10 samples, noise 0.003" in protocol
    assert "max-sensitivity: 10 samples, radius 0.02" in protocol and "ROAD" not in protocol
    _done(driver, server_url)


def test_audit_submit_progress_and_report(
    browser: Any,
    server_url: str,
    chelsea: Image.Image,
    coffee: Image.Image,
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    archive = views.audit_archive(tmp_path, {"chelsea.png": chelsea, "coffee.png": coffee})
    views.audit(driver, server_url, archive)
    assert driver.find_element(By.ID, "audit-results").get_attribute("data-status") == "done"
    assert driver.find_element(By.ID, "audit-progress-text").text == "done: 2 of 2 images."
    assert driver.find_element(By.ID, "audit-progress").get_attribute("value") == "1"
    rows = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#audit-rows tr")]
    assert rows[0].startswith("chelsea.png Egyptian cat") and rows[1].startswith(
        "coffee.png espresso"
    )
    _done(driver, server_url)
    report = driver.find_element(By.ID, "audit-report").get_attribute("href")
    assert httpx.get(report).status_code == 200
    driver.get(report)
    assert "chelsea.png" in driver.page_source and "coffee.png" in driver.page_source
    assert foreign_requests(driver, server_url) == []


def _assert_gaps(tiles: list[Any]) -> None:
    """Neighbouring tiles in a row are apart (a visible gap), never touching."""
    first, second = tiles[0].rect, tiles[1].rect
    assert abs(first["y"] - second["y"]) < 1
    assert second["x"] - (first["x"] + first["width"]) >= 4
