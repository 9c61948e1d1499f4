"""Drives each view of the web page in Chromium (shared by the tests and the screenshots)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

TIMEOUT_S = 60  # audits and compare run real models on a small CPU


def wait_for(driver: Any, css: str, timeout: float = TIMEOUT_S) -> Any:
    """The first element matching `css`, once present; the console's errors when it is not."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as expected
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout).until(
            expected.presence_of_element_located((By.CSS_SELECTOR, css))
        )
    except TimeoutException:
        errors = [entry["message"] for entry in driver.get_log("browser")]
        shown = driver.find_elements(By.CSS_SELECTOR, "#error:not([hidden])")
        detail = shown[0].text if shown else ""
        message = f"{css!r} did not appear; page error: {detail!r}; console: {errors}"
        raise AssertionError(message) from None


def open_view(driver: Any, server_url: str, view: str, image: Path | None) -> None:
    """Load the page, switch to `view` and choose `image` (when the view takes one)."""
    from selenium.webdriver.common.by import By

    driver.get(server_url + "/")
    wait_for(driver, "body[data-ready='true']")
    driver.find_element(By.ID, f"tab-{view}").click()
    wait_for(driver, f"body[data-view='{view}']")
    if image is not None:
        driver.find_element(By.ID, "image-input").send_keys(str(image))
        wait_for(driver, "#preview:not([hidden])")


def set_value(driver: Any, element_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(value)


def submit(driver: Any, button_id: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as expected
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, TIMEOUT_S).until(
        expected.element_to_be_clickable((By.ID, button_id))
    ).click()


def result_of(driver: Any, view: str) -> Any:
    """The view's results once shown."""
    return wait_for(driver, f".view[data-view='{view}'] .result-body:not([hidden])")


def click_in_view(driver: Any, element: Any) -> None:
    """Bring the element to mid-screen, clear of the sticky Explain bar, as a user scrolling
    to it would (the method list holds every registered method), then click it."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def explain(driver: Any, server_url: str, image: Path, methods: list[str]) -> None:
    from selenium.webdriver.common.by import By

    open_view(driver, server_url, "explain", image)
    for name in ("grad_cam", *methods):
        box = driver.find_element(By.ID, f"method-{name}")
        if box.is_selected() != (name in methods):
            click_in_view(driver, box)
    submit(driver, "explain-button")
    for name in methods:
        wait_for(driver, f"figure[data-method='{name}'] canvas.overlay[data-ready='true']")


def adversarial(driver: Any, server_url: str, image: Path) -> None:
    open_view(driver, server_url, "adversarial", image)
    set_value(driver, "adv-epsilon", "4")
    set_value(driver, "adv-steps", "3")  # few PGD steps: a small CPU
    submit(driver, "adversarial-button")
    result_of(driver, "adversarial")
    wait_for(driver, "#adv-image[src^='data:image/png']")


def activation_max(driver: Any, server_url: str, target: str) -> None:
    open_view(driver, server_url, "activation", None)
    set_value(driver, "target-input", target)
    set_value(driver, "act-steps", "8")
    submit(driver, "activation-button")
    result_of(driver, "activation")


def feature_maps(driver: Any, server_url: str, image: Path) -> None:
    open_view(driver, server_url, "features", image)
    set_value(driver, "feat-topk", "16")
    submit(driver, "features-button")
    result_of(driver, "features")


def filters(driver: Any, server_url: str) -> None:
    open_view(driver, server_url, "filters", None)
    submit(driver, "filters-button")
    result_of(driver, "filters")


def compare(driver: Any, server_url: str, image: Path, scores: str = "deletion,insertion") -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    open_view(driver, server_url, "compare", image)
    Select(driver.find_element(By.ID, "compare-scores")).select_by_value(scores)
    submit(driver, "compare-button")
    result_of(driver, "compare")


def audit_archive(directory: Path, images: dict[str, Any]) -> Path:
    """A zip of PNGs (name -> PIL image) for an audit."""
    path = directory / "audit.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, picture in images.items():
            buffer = io.BytesIO()
            picture.save(buffer, "PNG")
            archive.writestr(name, buffer.getvalue())
    return path


def audit(driver: Any, server_url: str, archive: Path) -> None:
    from selenium.webdriver.common.by import By

    open_view(driver, server_url, "audit", None)
    driver.find_element(By.ID, "audit-archive").send_keys(str(archive))
    submit(driver, "audit-button")
    wait_for(driver, "#audit-results[data-status]")
    wait_for(driver, "#audit-table:not([hidden])")


def drag_region(driver: Any, fractions: tuple[float, float, float, float]) -> None:
    """Drag a box on the region picker from (fx0, fy0) to (fx1, fy1), fractions of the image
    as shown."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import WebDriverWait

    image = wait_for(driver, "#region-picker:not([hidden]) img")
    WebDriverWait(driver, TIMEOUT_S).until(
        lambda d: d.execute_script(
            "const i = arguments[0]; return i.complete && i.clientWidth;", image
        )
    )
    width, height = image.size["width"], image.size["height"]
    fx0, fy0, fx1, fy1 = fractions
    start = (round((fx0 - 0.5) * width), round((fy0 - 0.5) * height))  # from the centre
    (
        ActionChains(driver)
        .move_to_element_with_offset(image, *start)
        .click_and_hold()
        .move_by_offset(round((fx1 - fx0) * width / 2), round((fy1 - fy0) * height / 2))
        .move_by_offset(round((fx1 - fx0) * width / 2), round((fy1 - fy0) * height / 2))
        .release()
        .perform()
    )


def segmentation_region(driver: Any, server_url: str, image: Path) -> None:
    """The explain view of a segmentation model with a box dragged on the image."""
    open_view(driver, server_url, "explain", image)
    wait_for(driver, "#region-field:not([hidden])")
    drag_region(driver, (0.25, 0.2, 0.75, 0.8))
    wait_for(driver, "#region-box:not([hidden])")


def explained(driver: Any, method: str = "grad_cam") -> None:
    submit(driver, "explain-button")
    wait_for(driver, f"figure[data-method='{method}'] canvas.overlay[data-ready='true']")
