"""The self-contained HTML report: summary, inline SVG charts, class-mean maps and a sortable,
filterable table with embedded thumbnails and overlays (base64); no external resource."""

from __future__ import annotations

import base64
import io
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape, unescape
from typing import Any, TextIO

from PIL import Image

from cnnlens import render
from cnnlens.audit.records import (
    FLAG_DEGENERATE,
    FLAG_OFF_OBJECT,
    FLAGS,
    AuditRecord,
    MapFindings,
)
from cnnlens.audit.report_views import (
    DETAIL_SCRIPT,
    MAP_SCRIPT,
    VIEWS_STYLE,
    OverlayLink,
    ThumbnailLink,
    detail_dialog,
    map_section,
    row_links,
)
from cnnlens.audit.summary import HISTOGRAM_BINS, SummaryBuilder
from cnnlens.audit.svg import bar_chart, binned_histogram
from cnnlens.features.report import (
    FINDING_HEADERS,
    cluster_rows,
    finding_cells,
    finding_options,
    finding_tags,
    row_data,
    summary_cards,
)
from cnnlens.html_safety import csp, inline_hashes, json_in_html

_STYLE = """
body{font-family:system-ui,sans-serif;margin:20px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:6px;
padding:8px 14px}.card b{display:block;font-size:20px}
.charts{display:flex;gap:24px;flex-wrap:wrap}
table{border-collapse:collapse;font-size:13px}th,td{border-bottom:1px solid #eee;padding:4px 6px;
text-align:left;vertical-align:middle}th.sortable{cursor:pointer;user-select:none}
th.sortable:after{content:" \\2195";color:#aaa}
.flag{display:inline-block;background:#fde2e1;color:#a11;border-radius:3px;padding:1px 5px;
margin:1px;font-size:11px}.ok{color:#176b1f}.bad{color:#b11}
img.t{max-height:96px;max-width:128px}.means{display:flex;gap:12px;flex-wrap:wrap}
.means figure{margin:0;text-align:center;font-size:12px}
#controls{margin:8px 0;display:flex;gap:12px;align-items:center}
"""

# A lens over a red dot, inline: the report stays one file with no request for /favicon.ico.
_FAVICON = "data:image/svg+xml;base64," + base64.b64encode(
    b"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'><circle cx='7' cy='7' r='5'"
    b" fill='#e15759' stroke='#222' stroke-width='2'/><path d='M11 11l4 4' stroke='#222'"
    b" stroke-width='2'/></svg>"
).decode("ascii")

# Thumbnails are embedded for this many rows (flagged first); the others link their overlay
# files, so that a report of tens of thousands of images stays a few megabytes.
EMBEDDED_ROWS = 500

_SCRIPT = """
(function(){
const table=document.getElementById('results');const body=table.tBodies[0];
const data=JSON.parse(document.getElementById('rows').textContent);
const search=document.getElementById('search');const flag=document.getElementById('flag');
const shown=document.getElementById('shown');const pager=document.getElementById('pager');
const PAGE=100;let page=0;let order=data;let hits=data;
// Shared with the map and the detail view: the rows, the map's selection (a Set of image
// indices, or null), and the views told of every new filter result.
const report=window.cnnlensReport={rows:data,selection:null,views:[],
 select:function(chosen){report.selection=chosen;apply();},shown:function(){return hits;}};
function matches(r,f){if(f==='all')return true;if(f==='flagged')return r.f!=='';
 if(f.startsWith('g:'))return (' '+r.g+' ').includes(' '+f.slice(2)+' ');
 return (' '+r.f+' ').includes(' '+f+' ');}
function filter(){const q=search.value.toLowerCase();const f=flag.value;const s=report.selection;
 hits=order.filter(function(r){return (!s||(r.d&&s.has(r.d.index)))&&(!q||r.t.includes(q))
  &&matches(r,f);});}
function render(){const pages=Math.max(1,Math.ceil(hits.length/PAGE));
 page=Math.min(page,pages-1);
 body.innerHTML=hits.slice(page*PAGE,(page+1)*PAGE).map(function(r){return r.h;}).join('');
 shown.textContent=hits.length+' of '+data.length+' images'
  +(report.selection?' (selected on the map)':'');
 pager.textContent='page '+(page+1)+' of '+pages;}
function apply(){page=0;filter();render();report.views.forEach(function(v){v(hits);});}
document.getElementById('prev').addEventListener('click',function(){if(page>0){page--;render();}});
document.getElementById('next').addEventListener('click',function(){page++;render();});
search.addEventListener('input',apply);flag.addEventListener('change',apply);
table.querySelectorAll('th.sortable').forEach(function(th){let up=true;
 th.addEventListener('click',function(){const c=th.cellIndex;const num=th.dataset.type==='num';
  order=data.slice().sort(function(a,b){let x=a.v[c],y=b.v[c];
   if(num){x=x===''?-Infinity:+x;y=y===''?-Infinity:+y;return up?x-y:y-x;}
   return up?x.localeCompare(y):y.localeCompare(x);});
  up=!up;filter();render();});});
apply();})();
"""
# Every inline script and style of the report, in the order they are written: the report's
# Content-Security-Policy allows exactly these texts, by their hashes (`report_policy`). A
# feature of the report that needs script adds its text here.
SCRIPTS: tuple[str, ...] = (_SCRIPT, MAP_SCRIPT, DETAIL_SCRIPT)
STYLES: tuple[str, ...] = (_STYLE, VIEWS_STYLE)


def report_policy() -> str:
    """The report's Content-Security-Policy: nothing runs or loads but its own inline scripts
    and styles (hashed from their text), the images embedded in it, and images of its own
    origin: the detail view's full-size overlays and the thumbnails of rows past the embedded
    ones (the files beside an on-disk report, the service's image routes)."""
    return csp(
        script_src=inline_hashes(*SCRIPTS),
        style_src=inline_hashes(*STYLES),
        img_src=["data:", "'self'"],
    )


def render_report(
    *,
    job: Mapping[str, Any],
    records: Sequence[AuditRecord | Mapping[str, Any]],
    summary: Mapping[str, Any],
    thumbnails: Mapping[int, bytes],
    overlays: Mapping[int, Mapping[str, bytes]],
    class_means: Sequence[Mapping[str, Any]],
    overlay_link: OverlayLink | None = None,
    thumbnail_link: ThumbnailLink | None = None,
) -> str:
    """The report as one HTML string."""
    rows = [AuditRecord.of(record) for record in records]
    facts = SummaryBuilder()
    for record in rows:
        facts.add(record)
    ordered = sorted(rows, key=lambda r: (-len(r.flags), r.index))
    sink = io.StringIO()
    write_report(
        sink,
        job=job,
        summary=summary,
        facts=facts,
        rows=((r, thumbnails.get(r.index), overlays.get(r.index, {})) for r in ordered),
        class_means=class_means,
        overlay_link=overlay_link,
        thumbnail_link=thumbnail_link,
    )
    return sink.getvalue()


ReportRow = tuple[AuditRecord, bytes | None, Mapping[str, bytes]]


def write_report(
    sink: TextIO,
    *,
    job: Mapping[str, Any],
    summary: Mapping[str, Any],
    facts: SummaryBuilder,
    rows: Iterable[ReportRow],
    class_means: Sequence[Mapping[str, Any]],
    overlay_link: OverlayLink | None = None,
    thumbnail_link: ThumbnailLink | None = None,
) -> None:
    """The report written as a stream: `facts` (one pass over the records) decides the charts
    and columns, `rows` (record, thumbnail, overlay thumbnails; flagged first) come one by one,
    so that only one row at a time is held. `overlay_link`: where rows link their full-size
    overlays (default: the files next to the report); `thumbnail_link`: where rows past the
    embedded ones find a thumbnail (a service's route; default: none, their overlay instead)."""
    methods = list(job.get("methods") or [])
    title = f"cnnlens audit {job.get('id', '')}"
    sink.write(
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{report_policy()}\">"
        f"<title>{escape(title)}</title><link rel='icon' href='{_FAVICON}'>"
        + "".join(f"<style>{style}</style>" for style in STYLES)
        + f"</head><body><h1>{escape(title)}</h1>"
    )
    sink.write(_header(job, summary))
    sink.write(_charts(facts, summary))
    sink.write(_tables(summary))
    sink.write(_class_means(class_means, methods))
    features = summary.get("features") if isinstance(summary.get("features"), Mapping) else None
    shown = _Columns(
        labels=facts.has_labels,
        regions=facts.has_regions,
        fragility=facts.has_fragility,
        detections=facts.has_detections,
        features=bool(features and features.get("images")),
    )
    if shown.features and features is not None:
        sink.write(dataset_section(features))
        sink.write(map_section(labels=facts.has_labels))
    sink.write(_results_head(methods, shown, features if shown.features else None))
    min_box_energy = float(job.get("min_box_energy") or 0.5)
    sink.write("[")
    link = overlay_link or _overlay_file
    for position, (record, thumbnail, overlays) in enumerate(rows):
        embed = position < EMBEDDED_ROWS
        row = _row(record, methods, thumbnail, overlays, shown, min_box_energy, embed, link)
        links = row_links(record, link, thumbnail_link, embed and thumbnail is not None)
        sink.write(("," if position else "") + _row_entry(row, record, links))
    sink.write("]</script>" + detail_dialog())
    sink.write("".join(f"<script>{script}</script>" for script in SCRIPTS) + "</body></html>")


def _overlay_file(index: int, method: str, relative: str) -> str:
    return relative


def _header(job: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    accuracy = summary.get("accuracy")
    mean_confidence = summary.get("mean_confidence")
    cards = [
        ("images", summary["images"]),
        ("analyzed", summary["analyzed"]),
        ("errors", summary["errors"]),
        ("flagged", summary["flagged"]),
        ("accuracy", "-" if accuracy is None else f"{accuracy:.1%} of {summary['labelled']}"),
        ("mean confidence", "-" if mean_confidence is None else f"{mean_confidence:.3f}"),
    ]
    detection = summary.get("detection")
    if detection is not None:  # a detector's: accuracy means every object found, nothing else
        cards += [
            (name, "-" if value is None else f"{value:.1%}")
            for name, value in (
                ("precision", detection["precision"]),
                ("recall", detection["recall"]),
            )
        ]
        cards += [(name, detection[name]) for name in ("matched", "missed", "false")]
    unmatched = (summary.get("labels_without_image") or {}).get("count")
    if unmatched:  # labels rows that name no image: a typo, or a file missing from the input
        cards.append(("labels rows without an image", unmatched))
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(job.get("updated") or time.time()))
    meta = (
        f"<p>model <b>{escape(str(job.get('model')))}</b>, methods "
        f"<b>{escape(', '.join(job.get('methods') or []))}</b>, status "
        f"<b>{escape(str(job.get('status')))}</b>, {escape(when)}</p>"
    )
    return (
        meta
        + "<div class='cards'>"
        + "".join(
            f"<div class='card'>{escape(name)}<b>{escape(str(value))}</b></div>"
            for name, value in cards
        )
        + "</div>"
    )


def _charts(facts: SummaryBuilder, summary: Mapping[str, Any]) -> str:
    series = [
        ("correct", "#59a14f", facts.histogram["correct"]),
        ("wrong", "#e15759", facts.histogram["wrong"]),
        ("unlabelled", "#9d9da1", facts.histogram["none"]),
    ]
    kept = [s for s in series if any(s[2])] or series[:1]
    charts = [binned_histogram("Top-1 confidence", kept, HISTOGRAM_BINS)]
    per_class = list(summary.get("per_class") or [])[:20]
    if per_class:
        charts.append(
            bar_chart(
                "Accuracy per class (worst first)",
                [f"{e['name']} ({e['n']})" for e in per_class],
                [e["accuracy"] for e in per_class],
                maximum=1.0,
                fmt="{:.0%}",
                color="#59a14f",
            )  # fmt: skip
        )
    counts = summary.get("flag_counts") or {}
    charts.append(
        bar_chart("Flags", list(FLAGS), [counts.get(f, 0) for f in FLAGS], color="#e15759")
    )
    return "<h2>Summary</h2><div class='charts'>" + "".join(charts) + "</div>"


def _tables(summary: Mapping[str, Any]) -> str:
    confusions = [
        [escape(p["label_name"]), escape(p["predicted_name"]), str(p["count"])]
        for p in list(summary.get("confusion_pairs") or [])[:15]
    ]
    mistakes = [
        [escape(m["name"]), escape(m["label_name"]), escape(m["predicted_name"]),
         f"{m['confidence']:.3f}"]
        for m in summary.get("confident_mistakes") or []
    ]  # fmt: skip
    return _table("Confusion pairs", ["label", "predicted", "count"], confusions) + _table(
        "Most confident mistakes", ["image", "label", "predicted", "confidence"], mistakes
    )


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A titled table of already escaped cells; nothing when there are no rows."""
    if not rows:
        return ""
    header = "".join(f"<th>{column}</th>" for column in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<h2>{title}</h2><table><tr>{header}</tr>{body}</table>"


def _class_means(class_means: Sequence[Mapping[str, Any]], methods: Sequence[str]) -> str:
    if not class_means:
        return ""
    method = methods[0] if methods else "map"
    figures = []
    for entry in class_means:
        heat = render.heatmap_image(entry["map"]).resize((112, 112), Image.Resampling.BILINEAR)
        figures.append(
            f"<figure><img alt='mean map' src='{_data_uri(render.to_png(heat), 'png')}'>"
            f"<figcaption>{escape(entry['name'])} ({entry['n']})</figcaption></figure>"
        )
    return (
        f"<h2>Class-mean {escape(method)} (by predicted class)</h2>"
        f"<div class='means'>{''.join(figures)}</div>"
    )


def dataset_section(features: Mapping[str, Any]) -> str:
    """The dataset view's cards and its clusters, worst accuracy first."""
    cards = "".join(
        f"<div class='card'>{escape(name)}<b>{escape(value)}</b></div>"
        for name, value in summary_cards(features)
    )
    clusters = _table(
        "Clusters (worst accuracy first)", ["cluster", "images", "accuracy", "top labels"],
        cluster_rows(features),
    )  # fmt: skip
    return f"<h2>Feature space</h2><div class='cards'>{cards}</div>{clusters}"


def _results_head(
    methods: Sequence[str], shown: _Columns, features: Mapping[str, Any] | None = None
) -> str:
    """Only the columns this audit asked for: labels, object regions and fragility each add
    theirs; localization is shown per method, so that each flag has its value in the row; the
    dataset view adds its findings and their filters. Ends inside the script element that
    holds the rows' data."""
    options = "".join(f"<option value='{f}'>{f}</option>" for f in FLAGS)
    options += finding_options(features)
    head: list[tuple[str, str | None]] = [("#", "num"), ("image", None)]
    head += [(m, None) for m in methods]
    head += [("name", "text")]
    head += [("label", "text")] if shown.labels else []
    head += [("prediction", "text"), ("confidence", "num")]
    head += [("correct", "text")] if shown.labels else []
    head += [("flags", "text")]
    if shown.detections:
        head += [("matched", "num"), ("missed", "num"), ("false", "num")]
        head += [("precision", "num"), ("recall", "num")]
    if shown.regions:
        for method in methods:
            head += [(f"{method} box energy", "num"), (f"{method} pointing", "text")]
    head += [("fragile ε", "num"), ("flips to", "text")] if shown.fragility else []
    head += FINDING_HEADERS if shown.features else []
    header = "".join(
        f"<th class='sortable' data-type='{kind}'>{escape(name)}</th>" if kind
        else f"<th>{escape(name)}</th>"
        for name, kind in head
    )  # fmt: skip
    return (
        "<h2>Images (flagged first)</h2><div id='controls'>"
        "<input id='search' type='search' placeholder='filter by name, class, flag…'>"
        f"<select id='flag'><option value='all'>all images</option><option value='flagged'>"
        f"flagged</option>{options}</select><span id='shown'></span>"
        "<button id='prev' type='button'>‹</button><span id='pager'></span>"
        "<button id='next' type='button'>›</button></div>"
        f"<table id='results'><thead><tr>{header}</tr></thead><tbody></tbody></table>"
        "<script id='rows' type='application/json'>"
    )


_VALUE = re.compile(r"<td[^>]*?(?: data-v='([^']*)')?>")
# The attributes a row's HTML carries to this function; the page reads them from the entry.
_ENTRY_ATTRIBUTES = re.compile(r" data-(?:v|flags|text)='[^']*'")


def _row_entry(
    row: str, record: AuditRecord | None = None, links: Mapping[str, Any] | None = None
) -> str:
    """One row as data the page renders a page at a time: text, flags and findings to filter
    on, each cell's sort value, the row's HTML (the JSON sits in a script element), and its
    data for the map and the detail view (`d`: map coordinates, cluster, neighbours...,
    and `links`)."""
    head = row[: row.index(">") + 1]
    flags = unescape(re.search(r"data-flags='([^']*)'", head).group(1))  # type: ignore[union-attr]
    text = unescape(re.search(r"data-text='([^']*)'", head).group(1))  # type: ignore[union-attr]
    values = [unescape(value or "") for value in _VALUE.findall(row)]
    # the HTML without what the entry now holds (about 200 bytes a row)
    html = _ENTRY_ATTRIBUTES.sub("", row)
    entry: dict[str, Any] = {"t": text, "f": flags, "v": values, "h": html}
    if record is not None:
        entry["g"] = finding_tags(record)
        # null fields left out (the scripts read a missing field as null): a few MB less on
        # a report of tens of thousands of rows
        data = {key: value for key, value in row_data(record).items() if value is not None}
        entry["d"] = {**data, **(links or {})}
    return json_in_html(entry)


@dataclass(frozen=True)
class _Columns:
    labels: bool
    regions: bool
    fragility: bool
    detections: bool = False
    features: bool = False


def flag_sources(
    row: AuditRecord | Mapping[str, Any], min_box_energy: float
) -> dict[str, list[str]]:
    """Which methods raised the map flags of a record (off_object, degenerate_map)."""
    sources: dict[str, list[str]] = {}
    for method, entry in AuditRecord.of(row).maps.items():
        energy = entry.box_energy
        if entry.pointing_hit is False or (energy is not None and energy < min_box_energy):
            sources.setdefault(FLAG_OFF_OBJECT, []).append(method)
        if entry.degenerate:
            sources.setdefault(FLAG_DEGENERATE, []).append(method)
    return sources


def _row(
    record: AuditRecord,
    methods: Sequence[str],
    thumbnail: bytes | None,
    overlays: Mapping[str, bytes],
    shown: _Columns,
    min_box_energy: float,
    embed: bool = True,
    overlay_link: OverlayLink = _overlay_file,
) -> str:
    name, label, predicted = record.name, record.label_name or "", record.predicted_name or ""
    cells = [
        _cell(str(record.index), record.index),
        _image_cell(thumbnail if embed else None, name, "image"),
    ]
    cells += [_overlay_cell(record, method, overlays, embed, overlay_link) for method in methods]
    # the name opens the row's detail view (the report's script reads the fragment)
    cells.append(_cell(f"<a href='#image-{record.index}'>{escape(name)}</a>", name))
    if shown.labels:
        cells.append(_cell(escape(label), label))
    if record.status == "error":
        cells.append(f"<td colspan='2' class='bad'>{escape(str(record.error))}</td>")
    else:
        cells.append(_cell(escape(predicted), predicted))
        cells.append(_cell(f"{record.confidence:.3f}", record.confidence))
    if shown.labels:
        cells.append(_correct_cell(record.correct))
    cells.append(_flags_cell(record.flags, flag_sources(record, min_box_energy)))
    if shown.detections:
        cells += _detection_cells(record)
    if shown.regions:
        cells += [
            cell for method in methods for cell in _region_cells(record, method, min_box_energy)
        ]
    if shown.fragility:
        cells += _fragility_cells(record)
    if shown.features:
        cells += [_cell(content, value, css) for content, value, css in finding_cells(record)]
    text = " ".join([name, label, predicted, *record.flags]).lower()
    flags = escape(" ".join(record.flags))
    return (
        f"<tr data-i='{record.index}' data-flags='{flags}' data-text='{escape(text)}'>"
        f"{''.join(cells)}</tr>"
    )


def _overlay_cell(
    record: AuditRecord,
    method: str,
    overlays: Mapping[str, bytes],
    embed: bool,
    overlay_link: OverlayLink,
) -> str:
    """The method's overlay thumbnail; beyond the embedded rows, a link to the overlay."""
    if embed:
        return _image_cell(overlays.get(method), f"{method} of {record.name}", method)
    if method in record.overlays:
        link = escape(overlay_link(record.index, method, str(record.overlays[method])))
        return f"<td><a href='{link}'>{escape(method)}</a></td>"
    return "<td></td>"


def _detection_cells(record: AuditRecord) -> list[str]:
    """A detector's matched, missed and false detections of the image, precision, recall."""
    detection = record.detection
    if detection is None:
        return [_cell("", "")] * 5
    cells = [
        _cell(str(count), count, "bad" if key != "matched" and count else None)
        for key in ("matched", "missed", "false")
        for count in [int(getattr(detection, key))]
    ]
    for value in (detection.precision, detection.recall):
        cells.append(_cell("" if value is None else f"{value:.2f}", "" if value is None else value))
    return cells


def _correct_cell(correct: bool | None) -> str:
    mark = {True: "<span class='ok'>yes</span>", False: "<span class='bad'>no</span>"}
    return _cell("" if correct is None else mark[correct], "" if correct is None else str(correct))


def _flags_cell(flags: Sequence[str], sources: Mapping[str, list[str]]) -> str:
    """Each flag, with the methods that raised it where they are known."""
    tags = []
    for flag in flags:
        by = sources.get(flag)
        suffix = f": {', '.join(by)}" if by else ""
        tags.append(f"<span class='flag'>{escape(flag + suffix)}</span>")
    return _cell("".join(tags), " ".join(flags))


def _region_cells(record: AuditRecord, method: str, min_box_energy: float) -> list[str]:
    """The method's box energy (low ones marked) and pointing game hit or miss."""
    entry = record.maps.get(method, MapFindings())
    energy, hit = entry.box_energy, entry.pointing_hit
    low = energy is not None and energy < min_box_energy
    return [
        _cell("" if energy is None else f"{energy:.2f}", "" if energy is None else energy,
              "bad" if low else None),
        _cell({True: "hit", False: "miss"}.get(hit, "") if hit is not None else "",
              "" if hit is None else str(hit), "bad" if hit is False else None),
    ]  # fmt: skip


def _fragility_cells(record: AuditRecord) -> list[str]:
    """The ε (of 255) at which the prediction first changed on the fragility ladder, and the
    class it changed to with that class's probability; "robust" where no step flipped it."""
    epsilon = record.fragile_epsilon
    if epsilon is None:
        tested = record.fragility_tested and record.status == "ok"
        return [_cell("robust" if tested else "", ""), _cell("", "")]
    name = str(record.fragile_class_name or record.fragile_class or "")
    probability = record.fragile_probability
    flip = escape(name) + ("" if probability is None else f" ({probability:.2f})")
    return [_cell(f"{epsilon:g}/255", epsilon), _cell(flip, name)]


def _cell(content: str, value: Any, css: str | None = None) -> str:
    kind = f" class='{css}'" if css else ""
    return f"<td{kind} data-v='{escape(str(value))}'>{content}</td>"


def _image_cell(data: bytes | None, alt: str, kind: str) -> str:
    """An embedded thumbnail; `kind` ("image" or the overlay's method) lets the detail view
    find it."""
    if data is None:
        return "<td></td>"
    src = _data_uri(data, "jpeg")
    return f"<td><img class='t' alt='{escape(alt)}' data-k='{escape(kind)}' src='{src}'></td>"


def _data_uri(data: bytes, kind: str) -> str:
    return f"data:image/{kind};base64,{base64.b64encode(data).decode('ascii')}"
