"""Compare attribution methods: side-by-side maps, their agreement and faithfulness scores.

    from cnnlens.compare import compare, CompareOptions
    result = compare(model, ["cat.jpg"], ["grad_cam", "guided_backprop"],
                     options=CompareOptions(steps=16, random_baseline=True))
    result.grid().save("grid.png"); result.to_json()

Scores: deletion / insertion AUC (Petsiuk et al. 2018), similarity under cascading model
randomization (Adebayo et al. 2018); agreement: Spearman rank correlation and top-k% IoU.
"""

from __future__ import annotations

from cnnlens.compare.benchmark import (
    benchmark,
    image_files,
    merge_reports,
    plot,
    summarize,
    to_csv,
    to_markdown,
)
from cnnlens.compare.engine import (
    Agreement,
    Comparison,
    ImageComparison,
    Stat,
    compare,
    compare_image,
    random_map,
)
from cnnlens.compare.faithfulness import PerturbationCurves, perturbation_curves
from cnnlens.compare.metrics import curve_auc, spearman, ssim, top_k_iou
from cnnlens.compare.options import SCORES, CompareOptions, parse_options
from cnnlens.compare.sanity import RandomizationResult, cascading_randomization

__all__ = [
    "SCORES",
    "Agreement",
    "CompareOptions",
    "Comparison",
    "ImageComparison",
    "PerturbationCurves",
    "RandomizationResult",
    "Stat",
    "benchmark",
    "cascading_randomization",
    "compare",
    "compare_image",
    "curve_auc",
    "image_files",
    "merge_reports",
    "parse_options",
    "perturbation_curves",
    "plot",
    "random_map",
    "spearman",
    "summarize",
    "ssim",
    "to_csv",
    "to_markdown",
    "top_k_iou",
]
