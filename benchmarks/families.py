"""Figures 13-15: the library-backed methods against the same library call, in this process.

13. Each Captum-backed method's own work (the driver's forward of the batch, which gives the
    predictions every method shares, left out) / Captum's call with the same baselines, mask
    and seed. The superpixel methods' reference computes the same SLIC mask in its call.
14. `lrp` / Zennit's `Gradient` attributor with the same composite and canonizer.
15. The CAM variants (the whole `attribute` call: their forward is the driver's) /
    pytorch-grad-cam's call on the same layer.
"""

from __future__ import annotations

import copy
import functools
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from benchmarks.report import Row, at_most
from benchmarks.timing import paired_quartiles, paired_ratio
from cnnlens.methods.base import MethodContext, get_method, parse_params
from cnnlens.methods.run import attribute, inventory_of, run_methods
from cnnlens.models import LoadedModel
from cnnlens.models.hooks import hook_session

if TYPE_CHECKING:
    from benchmarks.figures import Bench

Call = Callable[[], Any]
DEFAULT_MODEL = "efficientnet_lite0"


def _quiet() -> None:
    for library in ("captum", "pytorch_grad_cam", "zennit"):
        warnings.filterwarnings("ignore", module=library)


def method_call(
    loaded: LoadedModel, name: str, x: torch.Tensor, target: int, **params: Any
) -> Call:
    """The method's own work as `run_methods` runs it, its context made once beforehand."""
    run = run_methods(loaded, x, [(name, params)], target=target)
    method = get_method(name)
    parsed = parse_params(method, params)
    context = MethodContext(
        loaded.module,
        x,
        run.target,
        run.layer,
        loaded.preprocessing,
        inventory_of(loaded, (x.shape[-2], x.shape[-1])),
        loaded.categories,
    )

    def call() -> Any:
        with hook_session(loaded.module):
            return method.compute(context, parsed)

    return call


def _seeded(seed: int, call: Call) -> Call:
    def seeded() -> Any:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            np.random.seed(seed)
            return call()

    return seeded


def _slic_mask(loaded: LoadedModel, x: torch.Tensor, segments: int) -> torch.Tensor:
    from skimage.segmentation import slic

    pixels = loaded.preprocessing.denormalize(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    labels = slic(pixels, n_segments=segments, compactness=10.0, start_label=0, channel_axis=-1)
    return torch.from_numpy(labels).view(1, 1, *labels.shape)


def captum_calls(
    loaded: LoadedModel, x: torch.Tensor, target: int, samples: int, segments: int
) -> dict[str, tuple[dict[str, Any], Call]]:
    """name -> (cnnlens params, Captum's call doing the same work)."""
    import captum.attr as captum

    _quiet()
    module = loaded.module
    black = loaded.preprocessing.normalize(torch.zeros_like(x))
    white = loaded.preprocessing.normalize(torch.ones_like(x))
    pair = torch.cat([black, white])
    batch = 16

    def superpixels(kind: Any, **options: Any) -> Call:
        def call() -> torch.Tensor:
            mask = _slic_mask(loaded, x, segments)
            return kind(module).attribute(  # type: ignore[no-any-return]
                x, baselines=black, target=target, feature_mask=mask,
                perturbations_per_eval=batch, **options,
            )  # fmt: skip

        return call

    sampled = {"segments": segments, "batch_size": batch, "n_samples": samples, "seed": 0}
    return {
        "input_x_gradient": (
            {},
            lambda: captum.InputXGradient(module).attribute(x, target=target),
        ),
        "gradient_shap": (
            {"n_samples": samples, "seed": 0},
            _seeded(
                0,
                lambda: captum.GradientShap(module).attribute(
                    x, baselines=pair, n_samples=samples, target=target
                ),
            ),
        ),
        "lime": (sampled, _seeded(0, superpixels(captum.Lime, n_samples=samples))),
        "kernel_shap": (sampled, _seeded(0, superpixels(captum.KernelShap, n_samples=samples))),
        "feature_ablation": (
            {"segments": segments, "batch_size": batch},
            superpixels(captum.FeatureAblation),
        ),
    }


def deeplift_calls(
    loaded: LoadedModel, x: torch.Tensor, target: int
) -> dict[str, tuple[dict[str, Any], Call]]:
    import captum.attr as captum

    _quiet()
    module = loaded.module
    black = loaded.preprocessing.normalize(torch.zeros_like(x))
    pair = torch.cat([black, loaded.preprocessing.normalize(torch.ones_like(x))])
    return {
        "deeplift": (
            {},
            lambda: captum.DeepLift(module).attribute(x, baselines=black, target=target),
        ),
        "deeplift_shap": (
            {},
            lambda: captum.DeepLiftShap(module).attribute(x, baselines=pair, target=target),
        ),
    }


def zennit_lrp(module: nn.Module, x: torch.Tensor, target: int, canonizer: Any) -> Call:
    """Zennit's attributor, the composite made once (as a script would), the target's logit
    as the output relevance."""
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat

    attributor = Gradient(module, EpsilonPlusFlat(canonizers=[canonizer()]))

    def call() -> torch.Tensor:
        def relevance(output: torch.Tensor) -> torch.Tensor:
            return torch.eye(output.shape[1])[[target]] * output

        return attributor(x.clone(), relevance)[1]  # type: ignore[no-any-return]

    return call


def pytorch_grad_cam(
    kind: str, model: nn.Module, layer: str, x: torch.Tensor, target: int, **options: Any
) -> Call:
    """pytorch-grad-cam's `kind` on a trainable copy (its hooks need activations that require
    grad)."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    _quiet()
    trainable = copy.deepcopy(model).eval().requires_grad_(True)
    cam = getattr(pytorch_grad_cam, kind)(trainable, [trainable.get_submodule(layer)], **options)
    targets = [ClassifierOutputTarget(target)]
    return lambda: cam(input_tensor=x, targets=targets)


def ratio_rows(
    figure: str,
    label: str,
    timings: dict[str, Any],
    pairs: list[tuple[str, str, str]],
    limit: float,
) -> list[Row]:
    """One row per (ours, theirs, description): the median of the paired rounds' ratios."""
    rows = []
    for ours, theirs, description in pairs:
        ratio = paired_ratio(timings[ours], timings[theirs])
        low, high = paired_quartiles(timings[ours], timings[theirs])
        rows.append(
            Row(
                figure,
                description,
                label,
                ratio,
                "x",
                f"<= {limit}x",
                at_most(ratio, limit),
                note=f"{timings[ours].median_ms:.0f} ms vs {timings[theirs].median_ms:.0f} ms; "
                f"quartiles of the rounds {low:.3f}-{high:.3f}; {timings[ours].runs} rounds",
                detail={"ms": timings[ours].median_ms, "reference_ms": timings[theirs].median_ms},
            )
        )
    return rows


def _timed_pairs(
    bench: Bench,
    loaded: LoadedModel,
    x: torch.Tensor,
    target: int,
    calls: dict[str, Any],
    **kw: Any,
) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    timed: dict[str, Call] = {}
    pairs = []
    for name, (params, reference) in calls.items():
        timed[f"cnnlens {name}"] = method_call(loaded, name, x, target, **params)
        timed[f"captum {name}"] = reference
        pairs.append((f"cnnlens {name}", f"captum {name}", f"{name} / captum ({kw['where']})"))
    # Ratios near 1 on a shared machine: twice the rounds of the other figures.
    return bench.time(timed, repeats=2 * bench.settings.repeats), pairs


def captum_methods_figure(bench: Bench) -> list[Row]:
    """13. The Captum-backed methods / the same Captum call (<= 1.05x)."""
    figure, settings = "13 captum methods", bench.settings
    loaded = bench.model(DEFAULT_MODEL)
    x = bench.input(loaded, settings.size)
    target = _top1(loaded, x)
    samples, segments = (8, 16) if settings.quick else (16, 50)
    calls = captum_calls(loaded, x, target, samples, segments)
    where = f"{DEFAULT_MODEL}, {settings.size} px"
    timings, pairs = _timed_pairs(bench, loaded, x, target, calls, where=where)
    rows = ratio_rows(figure, bench.label, timings, pairs, 1.05)
    vgg = bench.model("torchvision:vgg11")  # DeepLIFT: one ReLU module per use
    size = 64 if settings.quick else 112
    x = bench.input(vgg, size)
    target = _top1(vgg, x)
    where = f"vgg11, weights none, {size} px"
    timings, pairs = _timed_pairs(
        bench, vgg, x, target, deeplift_calls(vgg, x, target), where=where
    )
    return rows + ratio_rows(figure, bench.label, timings, pairs, 1.05)


def lrp_figure(bench: Bench) -> list[Row]:
    """14. lrp / Zennit's attributor, epsilon_plus_flat (<= 1.1x)."""
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    figure, settings = "14 lrp", bench.settings
    rows = []
    for name, canonizer, size in (
        ("resnet18", ResNetCanonizer, 112 if settings.quick else 224),
        ("vgg11_bn", VGGCanonizer, 64 if settings.quick else 112),
    ):
        loaded = bench.model(f"torchvision:{name}")
        x = bench.input(loaded, size)
        target = _top1(loaded, x)
        calls = {
            "cnnlens lrp": method_call(loaded, "lrp", x, target),
            "zennit": zennit_lrp(loaded.module, x, target, canonizer),
        }
        timings = bench.time(calls)
        pair = [
            ("cnnlens lrp", "zennit", f"lrp / zennit Gradient ({name}, weights none, {size} px)")
        ]
        rows += ratio_rows(figure, bench.label, timings, pair, 1.1)
    return rows


CAM_KINDS = {
    "hirescam": "HiResCAM",
    "xgrad_cam": "XGradCAM",
    "layer_cam": "LayerCAM",
    "eigen_cam": "EigenCAM",
}


def cam_variants_figure(bench: Bench) -> list[Row]:
    """15. The CAM variants / pytorch-grad-cam on the same layer (<= 1.0x)."""
    figure, settings = "15 cam variants", bench.settings
    loaded = bench.model(DEFAULT_MODEL)
    x = bench.input(loaded, settings.size)
    target, layer = _top1(loaded, x), loaded.default_layer
    calls: dict[str, Call] = {}
    pairs = []
    for name, kind in CAM_KINDS.items():
        calls[name] = functools.partial(attribute, name, loaded, x, target=target)
        calls[kind] = pytorch_grad_cam(kind, loaded.module, layer, x, target)
        pairs.append((name, kind, f"{name} / pytorch-grad-cam {kind} ({DEFAULT_MODEL}, {layer})"))
    rows = ratio_rows(figure, bench.label, bench.time(calls), pairs, 1.0)
    # Ablation-CAM, every channel of resnet18's last block: pytorch-grad-cam runs the whole
    # model once per channel (512 forwards per call), so few rounds.
    resnet = bench.model("torchvision:resnet18")
    size = 64 if settings.quick else 112
    x = bench.input(resnet, size)
    target = _top1(resnet, x)
    ablation = {
        "ablation_cam": functools.partial(
            attribute, "ablation_cam", resnet, x, target=target, layer="layer4", channels="all"
        ),
        "AblationCAM": pytorch_grad_cam("AblationCAM", resnet.module, "layer4", x, target),
    }
    timings = bench.time(ablation, warmup=1, repeats=2 if settings.quick else 3)
    where = (
        "ablation_cam / pytorch-grad-cam AblationCAM "
        f"(resnet18, layer4, all 512 channels, {size} px)"
    )
    return rows + ratio_rows(
        figure, bench.label, timings, [("ablation_cam", "AblationCAM", where)], 1.0
    )


def _top1(loaded: LoadedModel, x: torch.Tensor) -> int:
    from benchmarks.figures import _top1 as top1  # (figures imports this module)

    return top1(loaded, x)
