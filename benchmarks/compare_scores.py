"""What each score of `compare` costs, as a ratio to a bare forward in the same process, and
cnnlens's calls against the libraries' own (captum's infidelity, pytorch-grad-cam's ROAD).

    python -m benchmarks.compare_scores [--repeats 3] [--out benchmarks/results/compare-scores]

efficientnet_lite0 at 224 px, chelsea, its Grad-CAM map, one torch thread. The seconds a
removed pixel costs pytorch-grad-cam's imputer is the figure `cnnlens.service.runtime.budget`
charges ROAD with (IMPUTE_SECONDS_PER_PIXEL), converted by each model's forward time.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import skimage.data
import torch
from captum.metrics import infidelity
from PIL import Image
from pytorch_grad_cam.metrics.perturbation_confidence import (
    RemoveLeastRelevantFirst,
    RemoveMostRelevantFirst,
)
from pytorch_grad_cam.metrics.road import NoisyLinearImputer, ROADCombined
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

from benchmarks.timing import paired_ratio, time_interleaved
from cnnlens import load_model
from cnnlens.compare.faithfulness import perturbation_curves
from cnnlens.compare.metrics import complexity, sparseness
from cnnlens.compare.road import road_score
from cnnlens.compare.robustness import infidelity_score, max_normalized, sensitivity_score
from cnnlens.methods import attribute

PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/compare-scores"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model("efficientnet_lite0")
    x = model.preprocessing(Image.fromarray(skimage.data.chelsea()))
    with torch.no_grad():
        target = int(model.module(x).argmax(1))
    cam = attribute("grad_cam", model, x, target=target)  # (1, 1, 224, 224)
    device = x.device

    def forward() -> None:
        with torch.no_grad():
            model.module(x)

    def captum_infidelity() -> None:
        draws = torch.randn((10, *x.shape[1:]), generator=torch.Generator().manual_seed(0))

        def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return draws[: len(inputs)] * 0.003, inputs - draws[: len(inputs)] * 0.003

        with torch.no_grad():
            infidelity(
                lambda inputs: model.module(inputs).softmax(1)[:, target],
                perturb, x, max_normalized(cam).expand_as(x), n_perturb_samples=10,
            )  # fmt: skip

    def road_combined() -> None:
        torch.manual_seed(0)
        ROADCombined(list(PERCENTILES))(
            x, cam[0].numpy(), [ClassifierOutputSoftmaxTarget(target)], model.module
        )

    calls: dict[str, Callable[[], Any]] = {
        "forward": forward,
        "deletion+insertion (16 steps)": lambda: perturbation_curves(
            model.module, x, cam[0], target, steps=16
        ),
        "infidelity (10 samples)": lambda: infidelity_score(model.module, x, cam, target),
        "captum infidelity (10 samples)": captum_infidelity,
        "sensitivity_max (10 samples)": lambda: sensitivity_score(
            model, x, "grad_cam", {}, cam, target
        ),
        "road (9 percentiles)": lambda: road_score(model.module, x, cam[0], target),
        "pytorch-grad-cam ROADCombined": road_combined,
        "sparseness+complexity": lambda: (sparseness(cam[0]), complexity(cam[0])),
    }
    timings = time_interleaved(calls, device, warmup=1, repeats=args.repeats)
    rows = [
        {
            "call": name,
            "median_ms": round(timing.median_ms, 2),
            "forwards": round(paired_ratio(timing, timings["forward"]), 1),
        }
        for name, timing in timings.items()
    ]
    ours, theirs = timings["road (9 percentiles)"], timings["pytorch-grad-cam ROADCombined"]
    mine, captums = timings["infidelity (10 samples)"], timings["captum infidelity (10 samples)"]
    imputation = _imputation_seconds_per_pixel(x, cam[0], args.repeats)
    result = {
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "threads": torch.get_num_threads(), "machine": platform.machine()},
        "rows": rows,
        "road / ROADCombined": round(paired_ratio(ours, theirs), 3),
        "infidelity / captum infidelity": round(paired_ratio(mine, captums), 3),
        "imputation_seconds_per_removed_pixel": imputation,
        "imputed pixel / forward": round(imputation / (timings["forward"].median_ms / 1000), 5),
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    lines = ["| call | median ms | forward-equivalents |", "|---|---|---|"]
    lines += [f"| {r['call']} | {r['median_ms']} | {r['forwards']} |" for r in rows]
    lines += [
        "",
        f"road ÷ pytorch-grad-cam's ROADCombined: {result['road / ROADCombined']}×; "
        f"infidelity ÷ captum's infidelity: {result['infidelity / captum infidelity']}×; "
        f"imputation: {imputation * 1e6:.1f} µs a removed pixel "
        f"({result['imputed pixel / forward']} forwards).",
    ]
    (args.out / "latest.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def _imputation_seconds_per_pixel(x: torch.Tensor, cam: torch.Tensor, repeats: int) -> float:
    """Median over repeats of (seconds of all 18 imputations) / (pixels they removed)."""
    image, mask = x[0], cam[0].float()
    removed = sum(2 * (100 - p) / 100 for p in PERCENTILES) * mask.numel()
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        for order in (RemoveLeastRelevantFirst, RemoveMostRelevantFirst):
            for p in PERCENTILES:
                order(p, NoisyLinearImputer())(image, mask)
        runs.append((time.perf_counter() - started) / removed)
    return float(statistics.median(runs))


if __name__ == "__main__":
    np.random.seed(0)
    main()
