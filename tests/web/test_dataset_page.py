"""The page's feature-space views against a live 127.0.0.1 service that audited a few
scikit-image crops (with exemplars of blocks.2), in headless Chromium with the network off: a
finished audit is chosen, an image dropped on it shows the neighbours the REST route answers
with their thumbnails; the activation-max view shows the audit's real exemplars of the channel
beside the synthetic image; the service's report draws its map and opens its detail view."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from cnnlens.models import LoadedModel
from tests.client.live_server import live_server
from tests.features.photos import crops
from tests.pinned import pinned_app, pinned_settings
from tests.web.dataset_views import (
    activation_with_exemplars,
    choose_audit,
    drop_for_neighbours,
    drop_image,
    png_bytes,
    service_audit,
)
from tests.web.offline import foreign_requests
from tests.web.report_page import console_errors, open_report, violations, watch_violations
from tests.web.views import wait_for

pytestmark = pytest.mark.browser
EGYPTIAN_CAT, ESPRESSO = 285, 967
CHANNEL = 15


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    made = crops()
    return {
        f"{name}.png": picture
        for name, picture in made.items()
        if name.startswith(("chelsea", "coffee", "astronaut")) and name[-1] in "012"
    }


@pytest.fixture(scope="module")
def audited(
    default_model: LoadedModel,
    photos: dict[str, Image.Image],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, str]]:
    """A live service and the id of its finished audit of `photos`."""
    data = tmp_path_factory.mktemp("service-data")
    app = pinned_app(pinned_settings({"data_dir": str(data), "warmup": False}), default_model)
    labels = {
        name: EGYPTIAN_CAT if name.startswith("chelsea") else ESPRESSO
        for name in photos
        if not name.startswith("astronaut")
    }
    with live_server(app) as url:
        yield url, service_audit(url, photos, labels, exemplars=("blocks.2",), exemplars_k=4)


def _clean(driver: Any, url: str) -> None:
    """Nothing fetched from another host, no script error, no page error shown."""
    assert foreign_requests(driver, url) == []
    assert driver.get_log("browser") == []
    assert driver.find_element("id", "error").get_attribute("hidden") is not None


def test_dropping_an_image_on_a_finished_audit_shows_its_neighbours(
    browser: Any, audited: tuple[str, str], photos: dict[str, Image.Image]
) -> None:
    url, job_id = audited
    browser.get_log("browser")
    choose_audit(browser, url, job_id)
    query = photos["chelsea_1.png"]
    shown = drop_for_neighbours(browser, query, "query.png", k=4)
    with httpx.Client(base_url=url, timeout=60) as http:
        answer = http.post(
            f"/v1/audits/{job_id}/neighbors",
            files={"image": ("query.png", png_bytes(query))}, data={"k": "4"},
        )  # fmt: skip
        expected = answer.json()["neighbors"]
        thumbnail = Image.open(io.BytesIO(http.get(
            f"/v1/audits/{job_id}/thumbnails/{expected[0]['index']}.jpg").content))  # fmt: skip
    assert shown == [entry["name"] for entry in expected]
    assert shown[0] == "chelsea_1.png"  # the audited copy of the query itself, nearest
    cards = browser.execute_script(
        """
        return [...document.querySelectorAll("#neighbours-list .neighbour")].map((item) => {
          const image = item.querySelector("img");
          return {text: item.querySelector(".neighbour-facts").textContent,
                  link: item.querySelector("a").getAttribute("href"),
                  size: [image.naturalWidth, image.naturalHeight]};
        });
        """
    )
    for card, entry in zip(cards, expected, strict=True):
        assert card["text"].startswith(f"distance {entry['distance']:.3f}")
        assert card["link"] == f"/v1/audits/{job_id}/report#image-{entry['index']}"
        if entry["label_name"]:
            assert f"label: {entry['label_name']}" in card["text"]
    assert cards[0]["size"] == list(thumbnail.size)  # the audit's own thumbnail
    assert all(card["size"][0] > 0 for card in cards)
    _clean(browser, url)


def test_the_activation_max_view_shows_the_audits_exemplars_of_the_channel(
    browser: Any, audited: tuple[str, str]
) -> None:
    url, job_id = audited
    browser.get_log("browser")
    choose_audit(browser, url, job_id)
    activation_with_exemplars(browser, "blocks.2", CHANNEL)
    with httpx.Client(base_url=url, timeout=60) as http:
        exemplars = http.get(f"/v1/audits/{job_id}/exemplars").json()["blocks.2"][str(CHANNEL)]
        sheet = Image.open(io.BytesIO(
            http.get(f"/v1/audits/{job_id}/exemplars/blocks.2/{CHANNEL}.png").content))  # fmt: skip
    listed = [item.text for item in browser.find_elements("css selector", "#act-exemplars-list li")]
    assert listed == [f"{e['name']} ({e['activation']:.2f})" for e in exemplars]
    shown = browser.execute_script(
        "const i = document.getElementById('act-exemplars-sheet');"
        "return [i.naturalWidth, i.naturalHeight];"
    )
    assert shown == list(sheet.size)
    caption = browser.find_element("id", "act-exemplars-caption").text
    assert f"channel {CHANNEL} of blocks.2" in caption and str(len(exemplars)) in caption
    # the synthetic image beside them, in the same row
    synthetic = browser.find_element("id", "act-image").rect
    real = browser.find_element("id", "act-exemplars").rect
    assert abs(synthetic["y"] - real["y"]) < 5 and real["x"] > synthetic["x"] + synthetic["width"]
    # a layer the audit kept no exemplars of: the synthetic image alone, and the reason
    browser.execute_script("document.getElementById('layer-select').value = 'blocks.1';")
    browser.find_element("id", "activation-button").click()
    wait_for(browser, "#act-exemplars[hidden]")
    note = wait_for(browser, "#act-exemplars-note:not([hidden])").text
    assert "blocks.2" in note
    _clean(browser, url)


def test_an_audit_without_features_says_why_it_finds_no_neighbours(
    browser: Any, audited: tuple[str, str], photos: dict[str, Image.Image]
) -> None:
    url, _ = audited
    two = dict(list(photos.items())[:2])
    plain = service_audit(url, two, exemplars=(), features=False)
    choose_audit(browser, url, plain)
    drop_image(browser, photos["coffee_0.png"], "query.png")
    status = wait_for(browser, "#neighbours-status.error-text")  # beside the drop zone
    assert "409" in status.text and "no_index" in status.text
    assert browser.find_elements("css selector", "#neighbours-list li") == []


def test_thumbnails_are_served(audited: tuple[str, str], photos: dict[str, Image.Image]) -> None:
    url, job_id = audited
    with httpx.Client(base_url=url, timeout=60) as http:
        results = http.get(f"/v1/audits/{job_id}/results").json()["results"]
        for record in results[:3]:
            answer = http.get(f"/v1/audits/{job_id}/thumbnails/{record['index']}.jpg")
            assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
            thumbnail = Image.open(io.BytesIO(answer.content))
            source = photos[record["name"]]
            assert max(thumbnail.size) == 160  # the audit's thumbnail_side
            assert abs(thumbnail.width / thumbnail.height - source.width / source.height) < 0.02
        for path, status in (
            (f"/v1/audits/{job_id}/thumbnails/999.jpg", 404),
            (f"/v1/audits/{'0' * 16}/thumbnails/0.jpg", 404),
            (f"/v1/audits/{job_id}/thumbnails/-1.jpg", 422),
        ):
            answer = http.get(path)
            assert answer.status_code == status, (path, answer.text)
            assert "error" in answer.json()


def test_the_service_report_draws_its_map_and_opens_details(
    browser: Any, audited: tuple[str, str], photos: dict[str, Image.Image]
) -> None:
    url, job_id = audited
    browser.get_log("browser")
    watch_violations(browser)
    open_report(browser, f"{url}/v1/audits/{job_id}/report")
    status = browser.execute_script("return document.getElementById('map-status').textContent")
    assert status == f"{len(photos)} images on the map"
    with httpx.Client(base_url=url, timeout=60) as http:
        results = http.get(f"/v1/audits/{job_id}/results").json()["results"]
    record = next(r for r in results if r["name"] == "coffee_2.png")
    browser.find_element("css selector", f"#results a[href='#image-{record['index']}']").click()
    wait_for(browser, "#detail[open]")
    browser.execute_script(
        "return Promise.all([...document.querySelectorAll('#detail img')]"
        ".map((i) => i.decode().catch(() => null)))"
    )
    overlay = browser.execute_script(
        "const i = document.querySelector('#detail img.full');"
        "return [i.naturalWidth, i.naturalHeight, i.src];"
    )
    source = photos["coffee_2.png"]
    assert overlay[:2] == [source.width, source.height]  # the overlay at the image's own size
    names = browser.execute_script(
        "return [...document.querySelectorAll('#detail ol.neighbours b')].map((b) => b.textContent)"
    )
    assert names == [n["name"] for n in record["neighbors"]]
    assert console_errors(browser) == [] and violations(browser) == []
