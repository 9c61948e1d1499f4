"""The report's map at scale, in headless Chromium: a report of `--points` synthetic rows
(20 000 by default; 500 with embedded thumbnails, as an audit writes it), timed in the page
with performance.now() around each interaction, the calls taken in turn:

- redraw: every point drawn again (the layer the map keeps), then the canvas composed;
- box and lasso: a pointer drag over about a tenth of the points (the lasso a 96-vertex
  polygon), from the release to the table filtered, its first page rendered and the map
  redrawn with the selection;
- hover: the nearest point found and its card shown;
- colour: colour-by switched (categories counted, legend rebuilt, points redrawn);
- the baseline, in the same page: the table's own text filter over the same rows (a class
  name typed in its search box: every row filtered, one page of the sixth that match
  rendered; the map not told), the work a selection adds its own to.

Each figure is the median of `--repeats` runs, as milliseconds and as a ratio to the
baseline and to one frame at 60 Hz (16.7 ms). A canvas is flushed by reading one pixel back
after drawing, so that the time includes the rasterization.

    python -m benchmarks.report_map [--points 20000] [--repeats 30] [--also 2000]
        [--out benchmarks/results/report-map]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "report-map"
FRAME_MS = 1000 / 60

# One interaction timed in the page: `arguments[0]` names it, `arguments[1]` is its round.
TIMED = """
const [what, round] = arguments;
const map = document.getElementById("map");
const rect = map.getBoundingClientRect();
const flush = () => { map.getContext("2d").getImageData(0, 0, 1, 1);
  document.getElementById("results").offsetHeight; };
const fire = (type, x, y) => map.dispatchEvent(new PointerEvent(type, {clientX: rect.left + x,
  clientY: rect.top + y, pointerId: 1, pointerType: "mouse", isPrimary: true, button: 0,
  buttons: type === "pointerup" ? 0 : 1, bubbles: true, cancelable: true}));
const w = rect.width, h = rect.height;
// a window over a tenth of the map's area, somewhere else each round
const cx = w * (0.25 + 0.5 * ((round * 0.37) % 1)), cy = h * (0.25 + 0.5 * ((round * 0.61) % 1));
const rx = w * 0.16, ry = h * 0.16;
const clear = () => window.cnnlensReport.select(null);
let started;
if (what === "redraw") {
  started = performance.now(); window.cnnlensMap.redraw(); flush();
} else if (what === "box") {
  fire("pointerdown", cx - rx, cy - ry); fire("pointermove", cx + rx, cy + ry);
  started = performance.now(); fire("pointerup", cx + rx, cy + ry); flush();
} else if (what === "lasso") {
  document.getElementById("map-mode-lasso").checked = true;
  fire("pointerdown", cx + rx, cy);
  for (let k = 1; k < 96; k++) {
    const t = 2 * Math.PI * k / 96;
    fire("pointermove", cx + rx * Math.cos(t), cy + ry * Math.sin(t));
  }
  started = performance.now(); fire("pointerup", cx + rx, cy); flush();
  document.getElementById("map-mode-box").checked = true;
} else if (what === "hover") {
  started = performance.now(); fire("pointermove", cx, cy);
  document.getElementById("map-tip").offsetWidth;
} else if (what === "colour") {
  const select = document.getElementById("map-colour");
  select.value = round % 2 ? "cluster" : "prediction";
  started = performance.now(); select.dispatchEvent(new Event("change")); flush();
} else if (what === "table filter") {  // the baseline: the table alone, the map not told
  const views = window.cnnlensReport.views.splice(0);
  const search = document.getElementById("search");  // a class: a sixth of the rows
  search.value = ["tench", "goldfish", "egyptian cat", "espresso", "rocket", "shuttle"][round % 6];
  started = performance.now(); search.dispatchEvent(new Event("input")); flush();
  window.cnnlensReport.views.push(...views);
}
const elapsed = performance.now() - started;
const selected = window.cnnlensReport.selection ? window.cnnlensReport.selection.size : null;
if (what === "box" || what === "lasso") clear();
if (what === "table filter") { const s = document.getElementById("search"); s.value = "";
  s.dispatchEvent(new Event("input")); }
if (what === "hover") fire("pointerleave", 0, 0);
return [elapsed, selected];
"""
TASKS = ("redraw", "box", "lasso", "hover", "colour", "table filter")


def build_report(points: int, folder: Path) -> Path:
    from tests.web.map_records import map_records, write_map_report

    return write_map_report(folder, map_records(points, blobs=12, spread=2.0), (160, 120))


def measure(points: int, repeats: int) -> dict[str, Any]:
    from tests.web.browser import start_browser
    from tests.web.report_page import console_errors

    folder = Path(tempfile.mkdtemp(prefix="cnnlens-bench-map-"))
    report = build_report(points, folder)
    driver = start_browser(1280, 1000)
    try:
        started = time.perf_counter()
        driver.get(report.as_uri())
        opened_s = time.perf_counter() - started
        driver.execute_script("document.getElementById('map').scrollIntoView({block:'center'})")
        shown = driver.execute_script("return document.getElementById('map-status').textContent")
        load = driver.execute_script(
            "const n = performance.getEntriesByType('navigation')[0];"
            "return [n.domContentLoadedEventEnd, n.loadEventEnd];"
        )
        timings: dict[str, list[float]] = {task: [] for task in TASKS}
        selected: dict[str, list[int]] = {"box": [], "lasso": []}
        for task in TASKS:  # warm-up: the JIT, the first layouts
            driver.execute_script(TIMED, task, 0)
        for round_ in range(1, repeats + 1):
            for task in TASKS:  # in turn: a load change shifts every figure alike
                elapsed, count = driver.execute_script(TIMED, task, round_)
                timings[task].append(float(elapsed))
                if task in selected:
                    selected[task].append(int(count))
        errors = console_errors(driver)
    finally:
        driver.quit()
    baseline = statistics.median(timings["table filter"])
    rows = {}
    for task in TASKS:
        median = statistics.median(timings[task])
        rows[task] = {
            "median_ms": round(median, 2),
            "p90_ms": round(sorted(timings[task])[int(0.9 * (len(timings[task]) - 1))], 2),
            "vs_table_filter": round(median / baseline, 3),
            "vs_frame": round(median / FRAME_MS, 3),
            "runs_ms": [round(t, 2) for t in timings[task]],
        }
    for task, counts in selected.items():
        rows[task]["median_selected"] = int(statistics.median(counts))
    return {
        "points": points,
        "repeats": repeats,
        "map_status": shown,
        "report_bytes": report.stat().st_size,
        "dom_content_loaded_ms": round(float(load[0]), 1),
        "load_ms": round(float(load[1]), 1),
        "open_s": round(opened_s, 2),
        "tasks": rows,
        "console_errors": errors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--also", type=int, nargs="*", default=[2_000], help="smaller reports")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    from tests.web.browser import missing

    reason = missing()
    if reason is not None:
        print(reason, file=sys.stderr)
        return 1
    import platform

    results = [measure(points, args.repeats) for points in [args.points, *args.also]]
    args.out.mkdir(parents=True, exist_ok=True)
    environment = {"machine": platform.machine(), "python": platform.python_version(),
                   "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}  # fmt: skip
    (args.out / "latest.json").write_text(
        json.dumps({"environment": environment, "results": results}, indent=2) + "\n"
    )
    lines = [
        "# The report's map in headless Chromium",
        "",
        f"{environment['time']}; medians of {args.repeats} runs taken in turn; baseline: the "
        "table's own text filter in the same page; a frame at 60 Hz is 16.7 ms.",
        "",
        "| points | interaction | median ms | p90 ms | × table filter | × frame |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for result in results:
        for task, row in result["tasks"].items():
            lines.append(
                f"| {result['points']} | {task} | {row['median_ms']} | {row['p90_ms']} | "
                f"{row['vs_table_filter']} | {row['vs_frame']} |"
            )
    lines.append("")
    for result in results:
        tasks = result["tasks"]
        lines.append(
            f"{result['points']} points: report {result['report_bytes'] / 1e6:.1f} MB, loaded "
            f"in {result['load_ms'] / 1000:.2f} s; box selected "
            f"{tasks['box'].get('median_selected')} and lasso "
            f"{tasks['lasso'].get('median_selected')} points (median); "
            f"console errors: {len(result['console_errors'])}."
        )
    (args.out / "latest.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
