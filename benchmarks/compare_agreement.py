"""How closely the compare scores agree with their reference implementations, as differences.

    python -m benchmarks.compare_agreement [--out benchmarks/results/compare-agreement]

efficientnet_lite0, each image's top-1 class, seed 0:
1. `baseline="rise"` deletion / insertion AUC of Grad-CAM and saliency on chelsea, coffee and
   rocket against the re-implementation of the RISE authors' evaluation code in
   tests/compare/test_rise_protocol.py, at 8 and 16 steps (the same schedule both sides).
2. `infidelity` and `sensitivity_max` against `captum.metrics` called directly with the same
   seeded perturbations, and `road` against pytorch-grad-cam's `ROADCombined` after
   `torch.manual_seed(seed)`, on chelsea at 96 x 96 (ROAD's sparse solves grow with pixels),
   default settings (10 samples, noise 0.003, radius 0.02, percentiles 10..90).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import skimage.data
import torch
from captum.metrics import infidelity, sensitivity_max
from PIL import Image
from pytorch_grad_cam.metrics.road import ROADCombined
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

from cnnlens import load_model
from cnnlens.compare import CompareOptions, compare
from cnnlens.compare.options import ROAD_PERCENTILES
from cnnlens.compare.road import road_score
from cnnlens.compare.robustness import infidelity_score, max_normalized, sensitivity_score
from cnnlens.methods import attribute
from cnnlens.models import LoadedModel
from tests.compare.test_rise_protocol import _2d, causal_metric

PHOTOS = ("chelsea", "coffee", "rocket")
METHODS = ("grad_cam", "saliency")
SMALL = 96


def rise_differences(model: LoadedModel, steps: int) -> list[dict[str, Any]]:
    """cnnlens's rise AUCs and the authors' protocol's, per image and method."""
    photos = [Image.fromarray(getattr(skimage.data, name)()) for name in PHOTOS]
    options = CompareOptions(steps=steps, scores=["deletion", "insertion"], baseline="rise")
    result = compare(model, photos, list(METHODS), options=options, names=list(PHOTOS))
    step = 224 * 224 // steps
    rows = []
    for picture, item in zip(photos, result.images, strict=True):
        img = model.preprocessing(picture)
        for method in METHODS:
            explanation = _2d(item.maps[method])
            row: dict[str, Any] = {"steps": steps, "image": item.name, "method": method}
            for kind, mode in (("deletion", "del"), ("insertion", "ins")):
                theirs = causal_metric(model.module, img, explanation, mode, step)
                ours = float(item.scores[method][kind])
                row[kind] = {"cnnlens": ours, "protocol": theirs, "diff": abs(ours - theirs)}
            rows.append(row)
    return rows


def _seeded(draw: Callable[..., torch.Tensor], shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return draw(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)


def captum_infidelity(
    model: LoadedModel, x: torch.Tensor, saliency: torch.Tensor, target: int, seed: int
) -> float:
    options = CompareOptions()
    draws = _seeded(torch.randn, (options.n_perturb_samples, *x.shape[1:]), seed)
    used = 0

    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal used
        perturbation = draws[used : used + len(inputs)] * options.infidelity_noise
        used += len(inputs)
        return perturbation, inputs - perturbation

    def probability(inputs: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = model.module(inputs)
        return logits.softmax(1)[:, target]

    attributions = max_normalized(saliency).expand_as(x)
    with torch.no_grad():
        value = infidelity(
            probability, perturb, x, attributions, n_perturb_samples=options.n_perturb_samples
        )
    return float(value[0])


def captum_sensitivity(
    model: LoadedModel, x: torch.Tensor, method: str, target: int, seed: int
) -> float:
    options = CompareOptions()
    draws = _seeded(torch.rand, (options.n_perturb_samples, *x.shape[1:]), seed)

    def perturb(inputs: torch.Tensor) -> torch.Tensor:
        return inputs + (2 * draws[: len(inputs)] - 1) * options.perturb_radius

    def explain(inputs: torch.Tensor | tuple[torch.Tensor, ...]) -> object:
        batch = inputs[0] if isinstance(inputs, tuple) else inputs
        with torch.enable_grad():
            maps = max_normalized(attribute(method, model, batch, target=target))
        return (maps,) if isinstance(inputs, tuple) else maps

    value = sensitivity_max(explain, x, perturb, n_perturb_samples=options.n_perturb_samples)
    return float(value[0])


def library_differences(model: LoadedModel, seed: int = 0) -> list[dict[str, Any]]:
    """infidelity, sensitivity_max and road against captum and pytorch-grad-cam."""
    picture = Image.fromarray(skimage.data.chelsea()).resize((SMALL, SMALL))
    x = model.preprocessing(picture)
    with torch.no_grad():
        target = int(model.module(x).argmax(1))
    options = CompareOptions()
    rows = []
    for method in METHODS:
        saliency = attribute(method, model, x, target=target)  # (1, 1, 96, 96)
        ours = infidelity_score(
            model.module, x, saliency, target, options.n_perturb_samples,
            options.infidelity_noise, seed,
        )  # fmt: skip
        rows.append(
            _row("infidelity", method, ours, captum_infidelity(model, x, saliency, target, seed))
        )
        ours = sensitivity_score(
            model, x, method, {}, saliency, target, n_perturb_samples=options.n_perturb_samples,
            radius=options.perturb_radius, seed=seed,
        )  # fmt: skip
        rows.append(
            _row(
                "sensitivity_max", method, ours, captum_sensitivity(model, x, method, target, seed)
            )
        )
        cam = saliency[0, 0]
        ours = road_score(model.module, x, cam, target, ROAD_PERCENTILES, seed=seed)
        torch.manual_seed(seed)
        theirs = ROADCombined(percentiles=list(ROAD_PERCENTILES))(
            x, cam.numpy()[None], [ClassifierOutputSoftmaxTarget(target)], model.module
        )
        rows.append(_row("road", method, ours, float(theirs[0])))
    return rows


def _row(score: str, method: str, ours: float, theirs: float) -> dict[str, Any]:
    diff = abs(ours - theirs)
    relative = diff / abs(theirs) if theirs else None
    return {
        "score": score, "method": method, "cnnlens": ours, "library": theirs, "diff": diff,
        "relative": relative,
    }  # fmt: skip


def to_markdown(rise: list[dict[str, Any]], libraries: list[dict[str, Any]]) -> str:
    lines = [
        "| steps | image | method | deletion cnnlens / protocol (diff) | insertion cnnlens / "
        "protocol (diff) |",
        "|---|---|---|---|---|",
    ]
    for row in rise:
        cells = [
            f"{row[k]['cnnlens']:.4f} / {row[k]['protocol']:.4f} ({row[k]['diff']:.1e})"
            for k in ("deletion", "insertion")
        ]
        lines.append(f"| {row['steps']} | {row['image']} | {row['method']} | {' | '.join(cells)} |")
    worst = max(max(row["deletion"]["diff"], row["insertion"]["diff"]) for row in rise)
    lines += ["", f"Largest |difference| against the RISE protocol: {worst:.1e}.", ""]
    lines += [
        "| score | method | cnnlens | library | |diff| | relative |",
        "|---|---|---|---|---|---|",
    ]
    for row in libraries:
        relative = "–" if row["relative"] is None else f"{row['relative']:.1e}"
        lines.append(
            f"| {row['score']} | {row['method']} | {row['cnnlens']:.6g} | {row['library']:.6g} "
            f"| {row['diff']:.1e} | {relative} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/compare-agreement"))
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_model("efficientnet_lite0")
    rise = [*rise_differences(model, 8), *rise_differences(model, 16)]
    libraries = library_differences(model)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(
        json.dumps({"rise": rise, "libraries": libraries}, indent=2) + "\n"
    )
    text = to_markdown(rise, libraries)
    (args.out / "latest.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
