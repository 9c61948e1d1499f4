"""The figures of docs/guides/feature-space.md, from an audit of scikit-image crops.

    PYTHONPATH=. python docs/guides/feature-space/figures.py [--out docs/guides/feature-space]

Audits the photo set of the tests (tests/features/photos.py: six crops of each of four
photos, two mirrored crops, four resized JPEG-45 copies, two flipped labels) with the default
model and exemplars of `blocks.2`, then draws:

- map.png: one panel per cluster, its images' thumbnails at their map positions (rescaled
  to the panel), framed in the cluster's colour; near-duplicates joined by a red line, label
  issues marked with a red corner;
- exemplars.png: the exemplar sheet of the channel with the largest top activation;
- numbers.json: the figures the guide quotes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from cnnlens.audit import AuditConfig, run_audit
from cnnlens.models import load_model
from tests.features.photos import write_photo_set

COLOURS = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7"]
PANEL, THUMB, MARGIN = 480, 72, 36


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cnnlens-feature-space-"))
    photos = write_photo_set(work / "photos")
    config = AuditConfig(features={"exemplars": ["blocks.2"]})
    run_audit(
        photos.folder,
        work / "out",
        config,
        labels=photos.labels,
        model=load_model("efficientnet_lite0"),
    )
    out = work / "out"
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())["summary"]["features"]
    args.out.mkdir(parents=True, exist_ok=True)
    draw_map(records, photos.folder, args.out / "map.png")
    exemplars = json.loads((out / "exemplars.json").read_text())["blocks.2"]
    best = max(exemplars, key=lambda channel: exemplars[channel][0]["activation"])
    Image.open(out / "exemplars" / "blocks.2" / f"{best}.png").save(args.out / "exemplars.png")
    numbers = {
        "summary": {key: value for key, value in summary.items() if key != "elapsed_s"},
        "exemplar_channel": best,
        "rows": [
            {key: record.get(key) for key in (
                "name", "label_name", "predicted_name", "confidence", "cluster",
                "near_duplicate_of", "outlier_score", "label_issue", "label_issue_score",
            )}
            for record in records
        ],
    }  # fmt: skip
    (args.out / "numbers.json").write_text(json.dumps(numbers, indent=1))


def draw_map(records: list[dict], folder: Path, path: Path) -> None:
    """One panel per cluster (UMAP packs each photo's crops tightly): the cluster's images
    at their map positions, rescaled to the panel, so that its neighbourhoods show."""
    clusters = sorted({r["cluster"] for r in records})
    columns = 2
    rows = -(-len(clusters) // columns)
    canvas = Image.new("RGB", (columns * PANEL, rows * PANEL), "white")
    pen = ImageDraw.Draw(canvas)
    for position, cluster in enumerate(clusters):
        members = [r for r in records if r["cluster"] == cluster]
        left, top = (position % columns) * PANEL, (position // columns) * PANEL
        colour = COLOURS[cluster % len(COLOURS)] if cluster >= 0 else "#999999"
        pen.rectangle(
            (left + 4, top + 4, left + PANEL - 5, top + PANEL - 5), outline=colour, width=3
        )
        pen.text((left + 14, top + 10), f"cluster {cluster}", fill=colour)
        where = _placed(members, left, top)
        for record in members:
            other = record.get("near_duplicate_of")
            if other in where:
                (x0, y0), (x1, y1) = where[record["name"]], where[other]
                half = THUMB // 2
                pen.line((x0 + half, y0 + half, x1 + half, y1 + half), fill="#e15759", width=4)
        for record in members:
            x, y = where[record["name"]]
            thumb = Image.open(folder / record["name"]).convert("RGB")
            thumb.thumbnail((THUMB, THUMB))
            pen.rectangle((x - 2, y - 2, x + thumb.width + 1, y + thumb.height + 1), fill=colour)
            canvas.paste(thumb, (x, y))
            if record.get("label_issue"):
                pen.polygon([(x, y), (x + 22, y), (x, y + 22)], fill="#e15759")
    canvas.save(path)


def _placed(members: list[dict], left: int, top: int) -> dict[str, tuple[int, int]]:
    xs, ys = [r["x"] for r in members], [r["y"] for r in members]
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    room = PANEL - 2 * MARGIN - THUMB
    return {
        r["name"]: (
            int(left + MARGIN + (r["x"] - min(xs)) / span_x * room),
            int(top + MARGIN + (r["y"] - min(ys)) / span_y * room),
        )
        for r in members
    }


if __name__ == "__main__":
    main()
