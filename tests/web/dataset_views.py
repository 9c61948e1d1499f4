"""Drives the page's feature-space views in Chromium (the tests and the screenshots): a finished
audit chosen, an image dropped on it for its neighbours, real exemplars beside activation max;
and drags on the report's map."""

from __future__ import annotations

import base64
import io
import time
import zipfile
from typing import Any

import httpx
from PIL import Image

from tests.web.views import TIMEOUT_S, open_view, set_value, submit, wait_for

# Drop a file (base64) on an element, as a user dragging it there would.
DROP_FILE = """
const [payload, name, type, target] = arguments;
const bytes = Uint8Array.from(atob(payload), (c) => c.charCodeAt(0));
const transfer = new DataTransfer();
transfer.items.add(new File([bytes], name, {type: type}));
const zone = document.getElementById(target);
const init = {dataTransfer: transfer, bubbles: true, cancelable: true};
zone.dispatchEvent(new DragEvent("dragover", init));
zone.dispatchEvent(new DragEvent("drop", init));
"""
# A pointer event on the report's map canvas at client coordinates.
POINTER = """
const [type, x, y] = arguments;
document.getElementById("map").dispatchEvent(new PointerEvent(type, {clientX: x, clientY: y,
  pointerId: 1, pointerType: "mouse", isPrimary: true, button: 0,
  buttons: type === "pointerup" ? 0 : 1, bubbles: true, cancelable: true}));
"""


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def service_audit(
    url: str,
    images: dict[str, Image.Image],
    labels: dict[str, int] | None = None,
    exemplars: tuple[str, ...] = ("blocks.2",),
    exemplars_k: int = 4,
    features: bool = True,
) -> str:
    """An audit of `images` (name -> picture) on the service at `url`, run to its end: its id."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as packed:
        for name, picture in images.items():
            packed.writestr(name, png_bytes(picture))
    files: dict[str, Any] = {"archive": ("photos.zip", archive.getvalue())}
    if labels:
        files["labels"] = ("labels.csv", "".join(f"{n},{c}\n" for n, c in labels.items()))
    form: dict[str, Any] = {"exemplars": list(exemplars), "exemplars_k": str(exemplars_k)}
    if not features:
        form["features"] = "false"
    with httpx.Client(base_url=url, timeout=60) as http:
        answer = http.post("/v1/audits", files=files, data=form)
        assert answer.status_code == 202, answer.text
        job_id: str = answer.json()["id"]
        deadline = time.monotonic() + 900  # a bound on a busy machine, not a timing assertion
        while (status := http.get(f"/v1/audits/{job_id}").json()["status"]) in (
            "queued", "running",
        ):  # fmt: skip
            assert time.monotonic() < deadline, "the audit did not end"
            time.sleep(0.3)
        assert status == "done", status
    return job_id


def choose_audit(driver: Any, url: str, job_id: str) -> None:
    """The audit view with the finished audit `job_id` chosen."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    open_view(driver, url, "audit", None)
    WebDriverWait(driver, TIMEOUT_S).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, f"#audit-choose option[value='{job_id}']")
    )
    Select(driver.find_element(By.ID, "audit-choose")).select_by_value(job_id)
    wait_for(driver, "#audit-neighbours:not([hidden])")


def drop_image(driver: Any, image: Image.Image, name: str, k: int = 5) -> None:
    """Drop `image` on the chosen audit's neighbours zone."""
    set_value(driver, "neighbours-k", str(k))
    driver.execute_script("document.getElementById('audit-neighbours').dataset.ready = '';")
    payload = base64.b64encode(png_bytes(image)).decode("ascii")
    driver.execute_script(DROP_FILE, payload, name, "image/png", "neighbours-drop")


def drop_for_neighbours(driver: Any, image: Image.Image, name: str, k: int = 5) -> list[str]:
    """Drop `image` on the chosen audit: the names of the neighbours shown, nearest first."""
    from selenium.webdriver.common.by import By

    drop_image(driver, image, name, k)
    wait_for(driver, "#audit-neighbours[data-ready='true']")
    wait_for(driver, "#neighbours-list .neighbour img[src^='blob:']")
    items = driver.find_elements(By.CSS_SELECTOR, "#neighbours-list .neighbour")
    return [item.get_attribute("data-name") for item in items]


def activation_with_exemplars(driver: Any, layer: str, channel: int, steps: int = 8) -> None:
    """In the activation-max view (an audit already chosen): synthesize `channel` of `layer`
    and wait for the audit's exemplars beside it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.find_element(By.ID, "tab-activation").click()
    wait_for(driver, "body[data-view='activation']")
    set_value(driver, "act-channel", str(channel))
    Select(driver.find_element(By.ID, "layer-select")).select_by_value(layer)
    set_value(driver, "act-steps", str(steps))
    submit(driver, "activation-button")
    wait_for(driver, ".view[data-view='activation'] .result-body:not([hidden])")
    wait_for(driver, f"#act-exemplars:not([hidden])[data-channel='{channel}']")
    wait_for(driver, "#act-exemplars-sheet[src^='blob:']")


def drag_on_map(driver: Any, path: list[tuple[float, float]]) -> None:
    """Press at the first point, move through the others, release at the last."""
    driver.execute_script(POINTER, "pointerdown", *path[0])
    for point in path[1:]:
        driver.execute_script(POINTER, "pointermove", *point)
    driver.execute_script(POINTER, "pointerup", *path[-1])
