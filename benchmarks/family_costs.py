"""Figure 16: what each new method costs, in forwards of its model, measured in this process.

Each method's whole `attribute` call at its default params (the forward that gives the
predictions included) / one no-grad forward of the same model on the same image, and / the
whole Grad-CAM call; beside it, the cost the method declares to the service's budget (whole
forwards and backwards per image). efficientnet_lite0 at the benchmark size serves every new
method but DeepLIFT and LRP (refused there: ReLU6 is fine, but its inverted residuals add and
its squeeze-excitation gates multiply activations), which run on vgg11 (weights none).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from benchmarks.report import Row
from benchmarks.timing import paired_quartiles, paired_ratio
from cnnlens.methods.base import get_method, parse_params
from cnnlens.methods.cost import layer_channels
from cnnlens.methods.run import attribute
from cnnlens.methods.workload import Workload
from cnnlens.models import LoadedModel

if TYPE_CHECKING:
    from benchmarks.figures import Bench

# (label, method, params): the defaults, and VarGrad as smoothgrad's variant.
Measured = tuple[str, str, dict[str, Any]]
ON_DEFAULT_MODEL: tuple[Measured, ...] = (
    *((name, name, {}) for name in (
        "input_x_gradient", "gradient_shap", "lime", "kernel_shap", "feature_ablation",
        "hirescam", "xgrad_cam", "layer_cam", "eigen_cam", "ablation_cam",
    )),
    ("vargrad", "smoothgrad", {"variant": "vargrad"}),
)  # fmt: skip
ON_VGG: tuple[Measured, ...] = tuple(
    (name, name, {}) for name in ("deeplift", "deeplift_shap", "lrp")
)


def declared(loaded: LoadedModel, name: str, params: dict[str, Any], size: int) -> str:
    """The method's declared cost per image at these params, as "F + B"."""
    method = get_method(name)
    workload = Workload(1, (3, size, size), layer_channels(loaded, loaded.default_layer))
    cost = method.cost(parse_params(method, params), workload)
    return f"{cost.forwards:g} F + {cost.backwards:g} B"


def _rows(
    bench: Bench, loaded: LoadedModel, where: str, size: int, measured: tuple[Measured, ...]
) -> list[Row]:
    x = bench.input(loaded, size)
    with torch.no_grad():
        target = int(loaded.module(x).argmax(dim=1)[0])

    def forward() -> Any:
        with torch.no_grad():
            return loaded.module(x)

    calls: dict[str, Callable[[], Any]] = {
        "forward": forward,
        "grad_cam": functools.partial(attribute, "grad_cam", loaded, x, target=target),
    }
    for label, name, params in measured:
        calls[label] = functools.partial(attribute, name, loaded, x, target=target, **params)
    timings = bench.time(calls, warmup=1, repeats=3 if bench.settings.quick else 5)
    rows = []
    for label, name, params in measured:
        ratio = paired_ratio(timings[label], timings["forward"])
        low, high = paired_quartiles(timings[label], timings["forward"])
        to_grad_cam = paired_ratio(timings[label], timings["grad_cam"])
        rows.append(
            Row(
                "16 family costs",
                f"{label} / one forward ({where})",
                bench.label,
                ratio,
                "x",
                note=f"{timings[label].median_ms:.0f} ms vs {timings['forward'].median_ms:.0f} ms; "
                f"quartiles {low:.1f}-{high:.1f}; / grad_cam {to_grad_cam:.1f}x; declared "
                f"{declared(loaded, name, params, size)}",
                detail={
                    "ms": timings[label].median_ms,
                    "forward_ms": timings["forward"].median_ms,
                    "grad_cam_ms": timings["grad_cam"].median_ms,
                    "per_grad_cam": to_grad_cam,
                },
            )
        )
    return rows


def family_costs_figure(bench: Bench) -> list[Row]:
    """16. Each new method / one forward of its model (reference; / grad_cam in the note)."""
    size = bench.settings.size
    default = bench.model("efficientnet_lite0")
    rows = _rows(bench, default, f"efficientnet_lite0, {size} px", size, ON_DEFAULT_MODEL)
    vgg = bench.model("torchvision:vgg11")
    small = 64 if bench.settings.quick else 112
    return rows + _rows(bench, vgg, f"vgg11, weights none, {small} px", small, ON_VGG)
