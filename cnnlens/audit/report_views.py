"""The report's map of the images and its per-row detail view: their markup, style and
scripts (templates/report_map.js, report_detail.js), and the links each row gives them.

The scripts read the rows the table's script publishes (`window.cnnlensReport`): the map draws
every row with map coordinates on a canvas, and its box or lasso selection filters the table;
the detail view shows one row's overlays at full size and its neighbours."""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from typing import Any

from cnnlens.features.columns import Row

_TEMPLATES = files("cnnlens.audit").joinpath("templates")
MAP_SCRIPT = _TEMPLATES.joinpath("report_map.js").read_text("utf-8")
DETAIL_SCRIPT = _TEMPLATES.joinpath("report_detail.js").read_text("utf-8")
VIEWS_STYLE = _TEMPLATES.joinpath("report_views.css").read_text("utf-8")

# What the map can colour its points by: (value, shown name, needs labels).
COLOUR_BY = (
    ("label", "label", True),
    ("prediction", "prediction", False),
    ("correctness", "correctness", True),
    ("flag", "flag", False),
    ("cluster", "cluster", False),
)
# Where a row links an image: (image index, method, the overlay's file relative to the
# report) -> URL; (image index) -> the URL of its thumbnail, where one is served.
OverlayLink = Callable[[int, str, str], str]
ThumbnailLink = Callable[[int], str]


def map_section(labels: bool) -> str:
    """The map's controls, canvas, hover card and legend (drawn by MAP_SCRIPT)."""
    default = "label" if labels else "cluster"
    options = "".join(
        f"<option value='{value}'{' selected' if value == default else ''}>{name}</option>"
        for value, name, needs_labels in COLOUR_BY
        if labels or not needs_labels
    )
    return (
        "<h2 id='map-heading'>Map of the images</h2>"
        "<p class='hint'>Each point is an image, placed by its feature vector: near points look"
        " alike to the model. Drag a box (or a lasso) to filter the table below, turn the wheel"
        " to zoom, click a point for its details.</p>"
        "<div id='map-controls'><label>colour by <select id='map-colour'>"
        f"{options}</select></label>"
        "<span role='radiogroup' aria-label='selection'>select with "
        "<label><input type='radio' name='map-mode' id='map-mode-box' value='box' checked>"
        " box</label> <label><input type='radio' name='map-mode' id='map-mode-lasso'"
        " value='lasso'> lasso</label></span>"
        "<button id='map-clear' type='button' disabled>clear selection</button>"
        "<button id='map-whole' type='button' hidden>whole map</button>"
        "<span id='map-status' aria-live='polite'></span></div>"
        "<div id='map-area'><div id='map-wrap'>"
        "<canvas id='map' role='img' aria-labelledby='map-heading'></canvas>"
        "<div id='map-tip' hidden></div></div>"
        "<ul id='map-legend' aria-label='legend'></ul></div>"
    )


def detail_dialog() -> str:
    """The dialog that DETAIL_SCRIPT fills with one row's overlays and neighbours."""
    return (
        "<dialog id='detail' aria-labelledby='detail-title'><div class='detail-head'>"
        "<h2 id='detail-title'></h2><button id='detail-close' type='button'"
        " aria-label='close'>×</button></div><div id='detail-body'></div></dialog>"
    )


def row_links(
    record: Row,
    overlay_link: OverlayLink,
    thumbnail_link: ThumbnailLink | None,
    embedded: bool,
) -> dict[str, Any]:
    """A row's links for the map and the detail view: `o` each method's full-size overlay,
    `u` its thumbnail where none is embedded and one is served."""
    index = int(record["index"])
    overlays = record.get("overlays") or {}
    links: dict[str, Any] = {
        "o": {method: overlay_link(index, method, str(path)) for method, path in overlays.items()}
    }
    if not embedded and thumbnail_link is not None and record.get("status") == "ok":
        links["u"] = thumbnail_link(index)
    return links
