"""Compare attribution methods on the same images: maps, agreement and faithfulness."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cnnlens.api.models import ClassScore
from cnnlens.compare.faithfulness import (
    PerturbationCurves,
    perturbation_curves,
    target_probability,
)
from cnnlens.compare.metrics import spearman, top_k_iou
from cnnlens.compare.options import (
    ALIASES,
    SSIM_SCORE,
    CompareOptions,
    score_names,
    with_aliases,
)
from cnnlens.compare.protocol import protocol
from cnnlens.compare.sanity import RandomizationResult, cascading_randomization
from cnnlens.compare.scoring import Explained, map_scores
from cnnlens.errors import ImageDecodeError, InvalidParamsError
from cnnlens.explain import (
    ImageRegion,
    input_box,
    input_region,
    predictions_of,
    row_scores,
)
from cnnlens.imageio import ImageSource, load_image
from cnnlens.methods.base import get_method
from cnnlens.methods.run import run_methods
from cnnlens.models import heads
from cnnlens.models.loaded import LoadedModel
from cnnlens.models.outputs import ModelOutput, count, take
from cnnlens.models.regions import Region, RegionError, region_weights
from cnnlens.progress import Bar, Tick, watched
from cnnlens.targets import BoxTarget, Class, Target, class_index

RANDOM = "random"  # name of the reference map scored with `random_baseline`


class Scores(dict[str, float]):
    """score name -> value; a former name (`deletion_auc`...) still reads its new one."""

    def __missing__(self, key: str) -> float:
        if key in ALIASES and ALIASES[key] in self:
            return self[ALIASES[key]]
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default


@dataclass
class Agreement:
    """How much two methods' maps of one image agree."""

    first: str
    second: str
    spearman: float  # rank correlation over all pixels
    top_k_iou: float  # overlap of their top-k% pixels


@dataclass
class ImageComparison:
    """Every method's map of one image, their agreement and their faithfulness scores."""

    name: str
    width: int  # the original image's size
    height: int
    image: Image.Image = field(repr=False)  # as the model sees it (its input size): the grid's
    target: ClassScore
    predictions: list[ClassScore]
    layer: str
    maps: dict[str, np.ndarray] = field(repr=False)  # (C, H, W) at the model's input size
    agreement: list[Agreement]
    curves: dict[str, PerturbationCurves]
    randomization: RandomizationResult | None
    scores: dict[str, Scores]  # method -> score name -> value (NaN: undefined)
    elapsed_ms: float = 0.0
    # the box given, in image pixels: a segmenter's region, or a detector's detection
    region: tuple[float, ...] | None = None

    def __repr__(self) -> str:
        target = self.target
        return (
            f"<ImageComparison {self.name!r} {self.width}x{self.height}: target "
            f"{target.label!r} ({target.index}, {target.probability:.3f}), "
            f"methods {', '.join(self.maps)}, {self.elapsed_ms / 1000:.1f} s>"
        )


@dataclass
class Stat:
    mean: float
    std: float  # population standard deviation over the images
    n: int


@dataclass
class Comparison:
    """The result of `compare`: one ImageComparison per image."""

    model: str
    methods: list[str]
    options: CompareOptions
    images: list[ImageComparison]

    @property
    def scored(self) -> list[str]:
        """Methods with scores, plus "random" when it was asked for."""
        return [*self.methods, *([RANDOM] if self.options.random_baseline else [])]

    @property
    def score_names(self) -> list[str]:
        """The scores reported, named as in `CompareOptions.scores` (+ randomization_ssim)."""
        return score_names(self.options)

    @property
    def protocol(self) -> dict[str, Any]:
        """What the scores did: baseline, kernel, steps, seed (`cnnlens.compare.protocol`)."""
        return protocol(self.options)

    def summary(self) -> dict[str, dict[str, Stat]]:
        """method -> score -> mean ± std over the images (undefined values left out)."""
        return summarize_scores(
            [item.scores for item in self.images], self.scored, self.score_names
        )

    def grid(self, shared_scale: bool | None = None, tile_size: int = 224) -> Image.Image:
        """Rows of [image, one overlay per method] (see `cnnlens.compare.grid`)."""
        from cnnlens.compare.grid import comparison_grid

        shared = self.options.shared_scale if shared_scale is None else shared_scale
        return comparison_grid(self, shared_scale=shared, tile_size=tile_size)

    def __repr__(self) -> str:
        return (
            f"<Comparison on {self.model}: {len(self.images)} images x "
            f"{', '.join(self.methods)}; scores {', '.join(self.score_names) or 'none'}>"
        )

    def _repr_png_(self) -> bytes:
        """A notebook shows the grid (`_repr_html_` adds the score tables)."""
        from cnnlens.render import to_png

        return to_png(self.grid())

    def _repr_html_(self) -> str:
        """The grid, the scores per method (mean ± std over the images) and the agreement."""
        from cnnlens.display import comparison_html

        pairs = [
            (
                f"{first} · {second}",
                _mean([a.spearman for a in found]),
                _mean([a.top_k_iou for a in found]),
            )
            for (first, second), found in _agreement_by_pair(self.images).items()
        ]
        return comparison_html(
            self.grid() if self.images else None,
            self.scored,
            {m: {k: vars(v) for k, v in s.items()} for m, s in self.summary().items()},
            pairs,
            repr(self),
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (NaN as null), without images or maps."""
        return {
            "model": self.model,
            "methods": list(self.methods),
            "options": self.options.model_dump(),
            "protocol": self.protocol,
            "images": [_image_json(item) for item in self.images],
            "summary": summary_json(self.summary()),
        }


def _agreement_by_pair(images: Sequence[ImageComparison]) -> dict[tuple[str, str], list[Agreement]]:
    pairs: dict[tuple[str, str], list[Agreement]] = {}
    for item in images:
        for agreement in item.agreement:
            pairs.setdefault((agreement.first, agreement.second), []).append(agreement)
    return pairs


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def summary_json(table: Mapping[str, Mapping[str, Stat]]) -> dict[str, dict[str, Any]]:
    """method -> score -> {mean, std, n}, former score names beside the new ones."""
    return {
        method: with_aliases({score: _stat_json(stat) for score, stat in scores.items()})
        for method, scores in table.items()
    }


def summarize_scores(
    per_image: Sequence[Mapping[str, Mapping[str, float | None]]],
    methods: Sequence[str],
    score_names: Sequence[str],
) -> dict[str, dict[str, Stat]]:
    """method -> score -> mean ± std over images; None or NaN values are left out."""
    table: dict[str, dict[str, Stat]] = {}
    for method in methods:
        table[method] = {}
        for score in score_names:
            values = [scores.get(method, {}).get(score) for scores in per_image]
            finite = np.array(
                [v for v in values if v is not None and math.isfinite(v)], dtype=np.float64
            )
            mean, std = (
                (float(finite.mean()), float(finite.std())) if finite.size else (math.nan,) * 2
            )
            table[method][score] = Stat(mean, std, int(finite.size))
    return table


def compare(
    model: LoadedModel,
    images: Sequence[ImageSource] | ImageSource,
    methods: Sequence[str] = ("saliency", "grad_cam", "guided_backprop"),
    target: Class | None = None,
    layer: str | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    options: CompareOptions | None = None,
    names: Sequence[str] | None = None,
    on_image: Callable[[ImageComparison], None] | None = None,
    on_error: Callable[[str, Exception], None] | None = None,
    region: ImageRegion = None,
    box: Sequence[float] | None = None,
    progress: bool | None = None,
) -> Comparison:
    """Several methods on several images: maps, pairwise agreement and faithfulness.

    Args:
        model: a LoadedModel.
        images: paths, bytes, PIL images or arrays (one, or a list).
        methods: attribution methods (their result must be a map of the image).
        target: one class for every image (index or label); None: each image's top-1.
        layer: target layer of layer-based methods (default: the model's default layer).
        params: per-method params keyed by method name.
        options: scores and their settings (CompareOptions).
        names: a name per image for the report (default: the path or "image-<i>").
        on_image: called with each image's result as soon as it is done (progress).
        on_error: when given, an image that cannot be read or explained (bad file, wrong
            format, too large) is reported to it and skipped instead of ending the run.
        region: segmentation models: a box (x0, y0, x1, y1) in each image's pixels or an
            (H, W) mask that the target's score is taken over (default: the pixels predicted
            as the target). The curves then follow the target's mean per-pixel probability
            over the region, fixed from the clean image.
        box: detectors: the detection compared, (x0, y0, x1, y1) in each image's pixels
            (with the `target` label, or any; default: each image's highest-scoring
            detection). The curves then follow its box score (IoU + score of the detection
            matching it, 0 once it is lost).
        progress: a progress bar on stderr (True / False); None: where someone watches (a
            terminal or a notebook).
    """
    options = options or CompareOptions()
    method_names = check_methods(methods)
    params = dict(params or {})
    for name in params:
        get_method(name)  # a typo in params is an error, not silently unused
    sources: list[ImageSource] = (
        list(images) if isinstance(images, list | tuple) else [cast(ImageSource, images)]
    )
    if not sources:
        raise InvalidParamsError("compare needs at least one image")
    labels = (
        list(names) if names is not None else [_default_name(s, i) for i, s in enumerate(sources)]
    )
    results: list[ImageComparison] = []
    steps = steps_per_image(len(method_names), options)
    with Bar(len(sources) * steps, "comparing", "step", watched(progress)) as bar:
        for number, (source, name) in enumerate(zip(sources, labels, strict=True), start=1):
            try:
                picture = source if isinstance(source, Image.Image) else load_image(source)
                item = compare_image(
                    model, picture, method_names, target, layer, params, options, name, region,
                    box, tick=bar.update,
                )  # fmt: skip
            except (ImageDecodeError, OSError) as error:
                if on_error is None:
                    raise
                on_error(name, error)
                continue
            finally:
                bar.set_done(number * steps)
            results.append(item)
            if on_image is not None:
                on_image(item)
    return Comparison(model.name, method_names, options, results)


def steps_per_image(methods: int, options: CompareOptions) -> int:
    """Progress units of one image: its maps, each scored map's curves, each randomized stage."""
    scored = methods + int(options.random_baseline)
    curves = scored if {"deletion", "insertion"} & set(options.scores) else 0
    stages = options.stages if "randomization" in options.scores else 0
    return 1 + curves + stages


def check_methods(methods: Sequence[str] | str) -> list[str]:
    """Distinct method names whose result is an attribution map (422 otherwise)."""
    names = [methods] if isinstance(methods, str) else list(dict.fromkeys(methods))
    if not names:
        raise InvalidParamsError("compare needs at least one method")
    for name in names:
        method = get_method(name)
        if method.produces != "map" or not method.uses_target:
            raise InvalidParamsError(
                f"{name!r} does not make an attribution map of the image; compare maps only"
            )
    return names


def compare_image(
    model: LoadedModel,
    picture: Image.Image,
    methods: Sequence[str],
    target: Class | None,
    layer: str | None,
    params: Mapping[str, Mapping[str, Any]],
    options: CompareOptions,
    name: str = "image",
    region: ImageRegion = None,
    box: Sequence[float] | None = None,
    tick: Tick | None = None,
) -> ImageComparison:
    """One image: the maps in one shared pass, then agreement, curves and randomization.
    `tick(1)` after the maps, each map's curves and each randomized stage (progress)."""
    started = time.perf_counter()
    tick = tick or _no_tick
    x = model.preprocessing(picture).to(model.device)  # (1, 3, H, W)
    classes = len(model.categories) or 1000
    explained = None if target is None else class_index(target, model.categories, classes)
    framing = model.preprocessing.framing(picture.width, picture.height)
    detector = model.head == heads.DETECTION
    if detector:
        if region is not None:
            raise RegionError("a detector's target is chosen by its box, not a region")
        wanted: Target | int | None = BoxTarget(explained, input_box(model, picture, box))
        given: Region = None
    else:
        wanted = explained
        given = input_region(model, picture, region)  # in input pixels; None: the predicted
    run = run_methods(
        model, x, [(m, dict(params.get(m, {}))) for m in methods], target=wanted,
        layer=layer, region=given,
    )  # fmt: skip
    index = int(run.targets[0])
    size = (x.shape[-2], x.shape[-1])
    logits = run.logits
    weights = (  # (h, w) at the logits' resolution: what the curves measure
        region_weights(given, logits, run.targets, size)[0]
        if isinstance(logits, torch.Tensor) and model.head == heads.SEGMENTATION
        else None
    )
    follow = _box_score(run.target) if detector else None
    explained_score = row_scores(model, run, framing)[0]
    if isinstance(logits, torch.Tensor):
        probability = float(target_probability(logits[:1], index, model.head, weights)[0])
        shares = heads.pixel_shares(logits[:1])[0] if weights is not None else None
        explained_score = ClassScore(
            index=index,
            label=model.label_of(index),
            probability=probability,
            pixel_share=None if shares is None else float(shares[index]),
        )
    predictions = predictions_of(model, take(logits, slice(0, 1)), framing=framing)
    maps = {m: run.outputs[m].map[0].float().cpu().numpy() for m in methods}  # (C, H, W)
    tick(1)
    agreement = [
        Agreement(a, b, spearman(maps[a], maps[b]), top_k_iou(maps[a], maps[b], options.top_k))
        for a, b in itertools.combinations(methods, 2)
    ]
    scored: dict[str, np.ndarray] = dict(maps)
    if options.random_baseline:
        scored[RANDOM] = random_map((x.shape[-2], x.shape[-1]), options.seed)
    kinds = tuple(kind for kind in ("deletion", "insertion") if kind in options.scores)
    fixed_region = _fixed_region(given, weights, size)
    curves: dict[str, PerturbationCurves] = {}
    if kinds:
        for method, raw in scored.items():
            curves[method] = perturbation_curves(
                model.module, x, raw, index, steps=options.steps, kinds=kinds,
                baseline=options.baseline, batch_size=options.batch_size,
                blur_sigma=options.blur_sigma, seed=options.seed, head=model.head, region=weights,
                follow=follow,
            )  # fmt: skip
            tick(1)
    randomization = None
    if "randomization" in options.scores:
        randomized_target: Target | int = index
        if isinstance(run.target, BoxTarget):  # the same box, whatever the copy detects
            randomized_target = replace(run.target, require_match=False)
        randomization = cascading_randomization(
            model, x, methods, randomized_target, {m: run.outputs[m].map for m in methods},
            layer=layer,
            params=params, stages=options.stages, seed=options.seed, with_ssim=options.ssim,
            region=fixed_region, on_stage=lambda: tick(1),
        )  # fmt: skip
    measured = Explained(model, x, index, weights, fixed_region, layer, params)
    scores = {
        m: Scores(
            **_scores(m, curves.get(m), randomization),
            **map_scores(measured, None if m == RANDOM else m, raw, options),
        )
        for m, raw in scored.items()
    }
    return ImageComparison(
        name=name,
        width=picture.width,
        height=picture.height,
        image=picture.convert("RGB")
        .crop(model.preprocessing.framing(picture.width, picture.height).explained_box)
        .resize((x.shape[-1], x.shape[-2]), Image.Resampling.BICUBIC),  # what the maps cover
        target=explained_score,
        predictions=predictions,
        layer=run.layer,
        maps=maps,
        agreement=agreement,
        curves=curves,
        randomization=randomization,
        scores=scores,
        elapsed_ms=(time.perf_counter() - started) * 1000,
        region=_given_box(box if detector else region),
    )


def _box_score(target: Target) -> Callable[[ModelOutput], torch.Tensor]:
    """A detector's curves: the explained box's score in each perturbed copy's detections."""

    def follow(output: ModelOutput) -> torch.Tensor:
        return target.score(output, torch.zeros(count(output), dtype=torch.long))

    return follow


def _no_tick(n: int) -> None:
    pass


def _given_box(region: ImageRegion) -> tuple[float, ...] | None:
    """The box a region was given as; None for a mask or the predicted pixels."""
    if region is None or isinstance(region, np.ndarray | torch.Tensor):
        return None
    return tuple(float(v) for v in region)


def _fixed_region(given: Region, weights: torch.Tensor | None, size: tuple[int, int]) -> Region:
    """The clean image's region for the randomized models: the one given, or the pixels the
    clean model predicted as the target (an (H, W) mask in input pixels)."""
    if given is not None or weights is None:
        return given
    if tuple(weights.shape) == tuple(size):
        return weights
    return F.interpolate(weights[None, None], size=size, mode="nearest")[0, 0]


def random_map(size: tuple[int, int], seed: int = 0, cells: int = 7) -> np.ndarray:
    """(1, H, W) seeded uniform noise on a cells x cells grid, upsampled bilinearly.

    A reference with the spatial scale of a CAM: per-pixel noise would be an unfair null,
    since scattering deleted pixels over the image breaks any classifier quickly.
    """
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 1, cells, cells, generator=generator)
    return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)[0].numpy()


def _scores(
    method: str, curves: PerturbationCurves | None, randomization: RandomizationResult | None
) -> dict[str, float]:
    scores: dict[str, float] = {}
    if curves is not None:
        if curves.deletion is not None:
            scores["deletion"] = float(curves.deletion_auc or 0.0)
        if curves.insertion is not None:
            scores["insertion"] = float(curves.insertion_auc or 0.0)
    if randomization is not None and method in randomization.similarity:
        scores["randomization"] = randomization.mean_similarity(method)
        structural = randomization.mean_ssim(method)
        if structural is not None:
            scores[SSIM_SCORE] = structural
    return scores


def _default_name(source: ImageSource, index: int) -> str:
    return (
        str(source)
        if isinstance(source, str) or hasattr(source, "__fspath__")
        else f"image-{index}"
    )


def _number(value: float) -> float | None:
    return round(float(value), 6) if math.isfinite(value) else None


def _numbers(values: Sequence[float] | None) -> list[float | None] | None:
    return None if values is None else [_number(v) for v in values]


def _score_json(score: ClassScore) -> dict[str, Any]:
    body: dict[str, Any] = {
        "index": score.index,
        "label": score.label,
        "probability": _number(score.probability),
    }
    if score.pixel_share is not None:
        body["pixel_share"] = _number(score.pixel_share)
    if score.box is not None:
        body["box"] = [round(float(v), 2) for v in score.box]
    return body


def _stat_json(stat: Stat) -> dict[str, Any]:
    return {"mean": _number(stat.mean), "std": _number(stat.std), "n": stat.n}


def _image_json(item: ImageComparison) -> dict[str, Any]:
    randomization = None
    if item.randomization is not None:
        randomization = {
            "stages": item.randomization.stages,
            "similarity": {m: _numbers(v) for m, v in item.randomization.similarity.items()},
            "ssim": {m: _numbers(v) for m, v in item.randomization.ssim.items()} or None,
        }
    return {
        "name": item.name,
        "width": item.width,
        "height": item.height,
        "target": _score_json(item.target),
        "predictions": [_score_json(p) for p in item.predictions],
        "layer": item.layer,
        "region": None if item.region is None else list(item.region),
        "agreement": [
            {
                "methods": [a.first, a.second],
                "spearman": _number(a.spearman),
                "top_k_iou": _number(a.top_k_iou),
            }
            for a in item.agreement
        ],
        "scores": {
            m: with_aliases({k: _number(v) for k, v in s.items()}) for m, s in item.scores.items()
        },
        "curves": {
            m: {
                "fractions": _numbers(c.fractions),
                "deletion": _numbers(c.deletion),
                "insertion": _numbers(c.insertion),
            }
            for m, c in item.curves.items()
        },
        "randomization": randomization,
        "elapsed_ms": round(item.elapsed_ms, 3),
    }
