"""Compare attribution methods: side-by-side maps, their agreement and faithfulness scores.

    import cnnlens
    result = cnnlens.compare(model, ["cat.jpg"], ["grad_cam", "guided_backprop"])
    result.grid().save("grid.png"); result.to_json()      # in a notebook: just `result`

The subpackage is callable: `cnnlens.compare(...)` is `cnnlens.compare.compare(...)`, the
function below (`from cnnlens.compare import compare` where a type checker must see it).

Scores (`CompareOptions.scores`): deletion / insertion AUC (Petsiuk et al. 2018; baseline
"rise" is the RISE authors' protocol), similarity under cascading model randomization
(Adebayo et al. 2018), infidelity and sensitivity_max (Yeh et al. 2019, through captum),
road (Rong et al. 2022, through pytorch-grad-cam), sparseness (Chalasani et al. 2020) and
complexity (Bhatt et al. 2020); agreement: Spearman rank correlation and top-k% IoU. Every
result records its protocol (`cnnlens.compare.protocol`).
"""

from __future__ import annotations

import inspect
import sys
import types
from typing import Any

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
from cnnlens.compare.metrics import complexity, curve_auc, sparseness, spearman, ssim, top_k_iou
from cnnlens.compare.options import DEFAULT_SCORES, SCORES, CompareOptions, parse_options
from cnnlens.compare.protocol import protocol
from cnnlens.compare.sanity import RandomizationResult, cascading_randomization

__all__ = [
    "DEFAULT_SCORES",
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
    "complexity",
    "curve_auc",
    "image_files",
    "merge_reports",
    "parse_options",
    "perturbation_curves",
    "plot",
    "protocol",
    "random_map",
    "sparseness",
    "spearman",
    "summarize",
    "ssim",
    "to_csv",
    "to_markdown",
    "top_k_iou",
]


class _CallableModule(types.ModuleType):
    """`cnnlens.compare(...)` calls `compare`: the subpackage is also the function."""

    def __call__(self, *args: Any, **kwargs: Any) -> Comparison:
        return compare(*args, **kwargs)


__signature__ = inspect.signature(compare)  # what `help` and IDEs show for the call
sys.modules[__name__].__class__ = _CallableModule
