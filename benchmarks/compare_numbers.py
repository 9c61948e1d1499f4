"""The numbers docs/guides/compare.md quotes, retaken: every figure from one run.

    python -m benchmarks.compare_numbers [--out benchmarks/results/compare-numbers]

efficientnet_lite0, scikit-image's chelsea, coffee and rocket, each image's top-1 class.
1. Deletion / insertion AUC of Grad-CAM and saliency under `baseline="rise"` (the RISE
   authors' protocol) at the default 16 steps and at their schedule (224 steps), with the
   authors' own order of tied pixels (numpy's argsort, flipped) beside cnnlens's seeded one,
   and under `baseline="blur"` (the former insertion canvas).
2. Chelsea at 8 steps: Grad-CAM's deletion AUC against random 7x7 maps (seeds 0-3), and the
   cascading randomization of the top three blocks (Adebayo et al.).
3. Every score, default settings, for Grad-CAM, saliency, guided backprop and a random map.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import skimage.data
import torch
from PIL import Image

from cnnlens import load_model
from cnnlens.compare import CompareOptions, compare, perturbation_curves, random_map, to_markdown
from cnnlens.compare.metrics import as_2d
from cnnlens.compare.options import SCORES
from cnnlens.models import LoadedModel

PHOTOS = ("chelsea", "coffee", "rocket")
METHODS = ("grad_cam", "saliency")


def authors_order(raw: np.ndarray) -> np.ndarray:
    """A map whose strict order is the RISE code's `np.flip(np.argsort(map))`: ties included."""
    flat = as_2d(raw).ravel()
    order = np.flip(np.argsort(flat))
    strict = np.empty(flat.size)
    strict[order] = np.arange(flat.size, 0, -1)
    return strict.reshape(as_2d(raw).shape)


def protocol_table(model: LoadedModel, photos: dict[str, Image.Image]) -> list[dict[str, Any]]:
    rows = []
    options = CompareOptions(scores=["deletion", "insertion"])
    result = compare(model, list(photos.values()), list(METHODS), options=options)
    for name, item in zip(photos, result.images, strict=True):
        x = model.preprocessing(photos[name])
        for method in METHODS:
            raw = item.maps[method]
            row: dict[str, Any] = {"image": name, "method": method}
            for label, saliency, baseline, steps in (
                ("rise_16", raw, "rise", 16),
                ("rise_224", raw, "rise", 224),
                ("rise_16_authors_ties", authors_order(raw), "rise", 16),
                ("blur_16", raw, "blur", 16),
            ):
                curves = perturbation_curves(
                    model.module, x, saliency, item.target.index, steps=steps, baseline=baseline
                )
                row[f"{label}_deletion"] = round(curves.deletion_auc or 0.0, 4)
                row[f"{label}_insertion"] = round(curves.insertion_auc or 0.0, 4)
            row["zero_pixels"] = round(float((as_2d(raw) == 0).mean()), 3)
            rows.append(row)
            print(row, flush=True)
    return rows


def sanity_figures(model: LoadedModel, chelsea: Image.Image) -> dict[str, Any]:
    options = CompareOptions(
        steps=8, scores=["deletion", "randomization"], stages=3, random_baseline=True
    )
    result = compare(model, chelsea, ["grad_cam", "guided_backprop"], options=options)
    item = result.images[0]
    x = model.preprocessing(chelsea)
    randoms = [item.scores["random"]["deletion"]]
    for seed in (1, 2, 3):
        curves = perturbation_curves(
            model.module, x, random_map((224, 224), seed), item.target.index, steps=8,
            kinds=("deletion",),
        )  # fmt: skip
        randoms.append(curves.deletion_auc or 0.0)
    return {
        "grad_cam_deletion_8_steps": round(item.scores["grad_cam"]["deletion"], 4),
        "random_deletion_8_steps": [round(v, 4) for v in randoms],
        "randomization": {
            m: round(item.scores[m]["randomization"], 4) for m in ("grad_cam", "guided_backprop")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/compare-numbers"))
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_model("efficientnet_lite0")
    photos = {name: Image.fromarray(getattr(skimage.data, name)()) for name in PHOTOS}
    sanity = sanity_figures(model, photos["chelsea"])
    print(sanity, flush=True)
    every = compare(
        model, list(photos.values()), ["grad_cam", "saliency", "guided_backprop"],
        options=CompareOptions(scores=list(SCORES), random_baseline=True),
        names=list(photos),
    )  # fmt: skip
    table = to_markdown(every)
    print(table, flush=True)
    rows = protocol_table(model, photos)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"protocol_rows": rows, "sanity": sanity, "every_score": every.to_json()}
    (args.out / "latest.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    keys = [k for k in rows[0] if k not in ("image", "method")]
    lines = ["| image | method | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    lines += [
        f"| {r['image']} | {r['method']} | " + " | ".join(str(r[k]) for k in keys) + " |"
        for r in rows
    ]
    lines += ["", json.dumps(sanity), "", table]
    (args.out / "latest.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
