"""Image-level explanations: maps for one image, aligned with its own pixels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from torch import nn

from cnnlens import render
from cnnlens.api.models import ClassScore  # segmentation: probability is the pixels' mean
from cnnlens.boxes import draw_detections
from cnnlens.imageio import ImageSource, load_image, rgb_pixels
from cnnlens.methods.base import MethodOutput, get_method, row_extras
from cnnlens.methods.run import run_methods
from cnnlens.models import heads
from cnnlens.models.custom import warn_train_mode
from cnnlens.models.detection import boxes_to_explain, detections_above
from cnnlens.models.framing import Framing
from cnnlens.models.loaded import LoadedModel
from cnnlens.models.outputs import ModelOutput, is_detections, take
from cnnlens.models.regions import Box, Region, RegionError
from cnnlens.models.registry import load_model
from cnnlens.targets import BoxTarget, Target, class_index

# A segmentation target's region over the image: a box (x0, y0, x1, y1) or an (H, W) mask.
ImageRegion = Sequence[float] | np.ndarray | torch.Tensor | None


@dataclass
class Explanation:
    """One method's map for one target, aligned with the original image's pixels."""

    method: str
    target: ClassScore | None
    layer: str | None
    # (H, W) or (3, H, W) float32 raw values; H, W = the image's own size. NaN where the
    # model does not see the image (the border a center-crop preprocessing cuts away).
    map: np.ndarray
    image: Image.Image = field(repr=False)
    extras: dict[str, Any] = field(default_factory=dict, repr=False)
    elapsed_ms: float = 0.0
    aligned: bool = True  # False for methods whose result is not a map of this image
    explained_box: tuple[int, int, int, int] | None = None  # (x0, y0, x1, y1) the map covers
    # Detectors: the image's detections, drawn on the overlay (the explained one, `target`,
    # highlighted).
    detections: tuple[ClassScore, ...] = ()
    # Computed once from `map` (not modified after construction) and shared by the heatmap
    # and the overlay: whether it has unexplained (NaN) pixels, the normalized map's
    # colour-table bins and its colour maps by cmap.
    _unexplained: bool | None = field(default=None, init=False, repr=False, compare=False)
    _bins: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)
    _colored: dict[str, np.ndarray] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def width(self) -> int:
        return int(self.map.shape[-1])

    @property
    def height(self) -> int:
        return int(self.map.shape[-2])

    def heatmap(self, cmap: str = "jet", palette: bool = False) -> Image.Image:
        """The map in colour at its own size, RGB. `palette=True`: the same colours as a
        palette (P) image where every pixel is explained, a third of the bytes to encode."""
        if self.map.ndim == 3 and self.map.shape[0] == 3:
            return render.rgb_map_image(self.map)
        if palette and self._in_colour_table():
            return render.palette_heatmap(self._colour_bins(), cmap)
        return Image.fromarray(self._colormap(cmap))

    def _in_colour_table(self) -> bool:
        """A one-channel map with every pixel explained: its colours are a colour table's."""
        return not (self.map.ndim == 3 and self.map.shape[0] == 3) and not self._has_unexplained()

    def _has_unexplained(self) -> bool:
        if self._unexplained is None:
            self._unexplained = bool(np.isnan(self.map).any())
        return self._unexplained

    def overlay(self, alpha: float = 0.5, cmap: str = "jet") -> Image.Image:
        """The map's colours blended over the image, RGB (the heatmap where the result is
        not a map of this image)."""
        if not self.aligned:
            return self.heatmap(cmap)
        return Image.fromarray(self.overlay_pixels(alpha, cmap))

    def overlay_pixels(self, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
        """`overlay` as (H, W, 3) uint8 RGB pixels (what the service encodes); a detector's
        detections drawn on it."""
        if not self.aligned:
            return rgb_pixels(self.heatmap(cmap))
        if self.map.ndim == 2 or self.map.shape[0] == 1:
            heat = self._colormap(cmap)
        else:  # (3, H, W): coloured by max |value| (`render.to_2d`)
            heat = render.map_colours(self.map, (self.height, self.width), cmap)
        blended = render.blend(self.image, heat, alpha)
        if self.target is not None and self.target.box is not None:
            drawn = draw_detections(Image.fromarray(blended), self.detections, self.target)
            return np.asarray(drawn)
        return blended

    def _colormap(self, cmap: str) -> np.ndarray:
        """(H, W, 3) uint8: the normalized map through `cmap`, computed once per cmap."""
        if cmap not in self._colored:
            colored = render.colour_lookup(self._colour_bins(), cmap)
            if self._has_unexplained():
                colored = render.mark_unexplained(colored, self.map)
            self._colored[cmap] = colored
        return self._colored[cmap]

    def _colour_bins(self) -> np.ndarray:
        if self._bins is None:
            self._bins = render.map_bins(self.map)
        return self._bins

    def heatmap_png(self, cmap: str = "jet") -> bytes:
        """`heatmap(palette=True)` as PNG bytes (a palette PNG where it can be)."""
        if self._in_colour_table():
            return render.palette_png(self._colour_bins(), cmap)
        return render.to_png(self.heatmap(cmap))

    def overlay_png(self, alpha: float = 0.5, cmap: str = "jet") -> bytes:
        return render.to_png(self.overlay_pixels(alpha, cmap))

    def __repr__(self) -> str:
        target = "" if self.target is None else f", target={_score_text(self.target)}"
        layer = "" if self.layer is None else f", layer={self.layer!r}"
        shape = "x".join(str(n) for n in self.map.shape)
        return (
            f"Explanation(method={self.method!r}{target}{layer}, "
            f"map={self.map.dtype} {shape}, elapsed_ms={self.elapsed_ms:.1f})"
        )

    def _repr_png_(self) -> bytes:
        """A notebook shows the overlay with its legend and title."""
        from cnnlens.display import explanation_figure

        return render.to_png(explanation_figure(self))

    def _repr_html_(self) -> str:
        from cnnlens.display import explanation_html

        return explanation_html(self)


class Explanations(list[Explanation]):
    """The explanations of one image, with the model's top predictions for it.

    With a sigmoid head each prediction's probability is that class's own sigmoid
    (independent of the others); with softmax they sum to one over all classes.
    """

    def __init__(
        self,
        items: Sequence[Explanation],
        predictions: list[ClassScore],
        image: Image.Image,
        was_training: bool = False,
    ) -> None:
        super().__init__(items)
        self.was_training = was_training  # the model came in train mode (explained in eval)
        self.predictions = predictions
        self.image = image

    def __repr__(self) -> str:
        top = f", top-1 {_score_text(self.predictions[0])}" if self.predictions else ""
        maps = ", ".join(f"{e.method}" + (f"/{e.target.index}" if e.target else "") for e in self)
        return (
            f"<Explanations of a {self.image.width}x{self.image.height} image: "
            f"{len(self)} maps ({maps}){top}>"
        )

    def _repr_png_(self) -> bytes:
        """A notebook shows the photo and every overlay in a row, with the predictions."""
        from cnnlens.display import explanations_strip

        return render.to_png(explanations_strip(self))

    def _repr_html_(self) -> str:
        """The predictions, then a row per method: target, layer, overlay with its legend."""
        from cnnlens.display import explanations_html

        return explanations_html(self)


def _score_text(score: ClassScore) -> str:
    return f"{score.label!r} ({score.index}, {score.probability:.3f})"


def explain(
    model: LoadedModel | str,
    image: ImageSource,
    methods: Sequence[str] | str = ("grad_cam",),
    target: int | str | Sequence[int | str] | None = None,
    layer: str | nn.Module | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    top_k: int = 5,
    region: ImageRegion = None,
    box: Sequence[float] | None = None,
) -> Explanations:
    """Explain one image with several methods and targets, sharing passes where possible.

    Args:
        model: a LoadedModel or a model name for `load_model`.
        image: a path, bytes, PIL image or array.
        methods: method names (see `cnnlens.method_names()`).
        target: None (top-1), a class index or label, or several (one map each).
            Detectors: the label(s) of the detections to explain; None: every detection
            above the model's score_threshold (one map each).
        layer: module name or module object for layer-based methods (default: the model's
            default layer).
        params: per-method parameters, keyed by method name.
        top_k: how many predictions to report (segmentation models: every class present,
            by pixel share).
        region: segmentation models: a box (x0, y0, x1, y1) in the image's pixels or a
            boolean mask of the image's size that each target's logits are summed over
            (default: the pixels predicted as the target).
        box: detectors: the detection to explain, x0, y0, x1, y1 in the image's pixels (the
            one the model returns with the `target` label, or any label when None, that
            overlaps it most with IoU >= 0.5; none: `NoDetectionError`, 422).
    """
    loaded = load_model(model) if isinstance(model, str) else model
    picture = load_image(image)
    method_list = [methods] if isinstance(methods, str) else list(dict.fromkeys(methods))
    params = params or {}
    for name in params:
        get_method(name)  # unknown names in params are errors too
    x = loaded.preprocessing(picture).to(loaded.device)  # (1, 3, h, w)
    targets = _target_list(loaded, target)
    chosen = [(name, dict(params.get(name, {}))) for name in method_list]
    if loaded.head == heads.DETECTION:
        if region is not None:
            raise RegionError("a detector's target is chosen by its box, not a region")
        wanted = boxes_to_explain(loaded, x, targets, input_box(loaded, picture, box))
        batch = x.expand(wanted.box_tensor.shape[0], -1, -1, -1)
        result = run_methods(loaded, batch, chosen, target=wanted, layer=layer)
    else:
        input_box(loaded, picture, box)  # a box on a classifier: 422
        batch = x.expand(len(targets), -1, -1, -1) if targets else x
        result = run_methods(
            loaded,
            batch,
            chosen,
            target=targets or None,
            layer=layer,
            region=input_region(loaded, picture, region),
        )
    framing = loaded.preprocessing.framing(picture.width, picture.height)
    predictions = predictions_of(loaded, take(result.logits, slice(0, 1)), top_k, framing)
    explanations = explanations_from_run(loaded, picture, result, method_list)
    warn_train_mode(loaded.module, loaded.name)
    was_training = loaded.was_training or loaded.module.training
    return Explanations(explanations, predictions, picture, was_training=was_training)


class MethodRun(Protocol):
    """What a run of methods over one image's rows gives (RunResult or a batch's share)."""

    outputs: dict[str, MethodOutput]
    logits: ModelOutput  # (rows, K), (rows, K, h, w) or a detector's detections
    layer: str
    elapsed_ms: dict[str, float]

    @property
    def target(self) -> Target:
        """What each row explained (resolved)."""


def explanations_from_run(
    model: LoadedModel, picture: Image.Image, run: MethodRun, method_names: Sequence[str]
) -> list[Explanation]:
    """One Explanation per method and target row, each map on the picture's own pixels."""
    framing = model.preprocessing.framing(picture.width, picture.height)
    scores = row_scores(model, run, framing)
    detections: tuple[ClassScore, ...] = ()
    if model.head == heads.DETECTION:
        first = take(run.logits, slice(0, 1))
        detections = tuple(predictions_of(model, first, framing=framing))
    explanations: list[Explanation] = []
    for name in method_names:
        method = get_method(name)
        output = run.outputs[name]
        count = output.map.shape[0] if method.uses_target else 1
        aligned = method.produces in ("map", "activations")
        for row in range(count):
            target = scores[row]
            raw = output.map[row]
            explanations.append(
                Explanation(
                    method=name,
                    target=target if method.uses_target else None,
                    layer=run.layer if method.uses_layer else None,
                    map=framing.place(raw) if aligned else raw.detach().float().cpu().numpy(),
                    image=picture,
                    extras=row_extras(output.extras, row, output.map.shape[0]),
                    elapsed_ms=run.elapsed_ms.get(name, 0.0) / count,
                    aligned=aligned,
                    explained_box=framing.explained_box if aligned else None,
                    detections=detections if aligned else (),
                )
            )
    return explanations


def row_scores(model: LoadedModel, run: MethodRun, framing: Framing) -> list[ClassScore]:
    """What each row explained: its class and probability (segmentation: with its pixel
    share; detection: the matched detection's score and box in the image's pixels)."""
    if model.head == heads.DETECTION:
        assert isinstance(run.target, BoxTarget) and is_detections(run.logits)
        scores = []
        boxes = run.target.box_tensor
        for row, (index, match) in enumerate(
            zip(run.target.indices.tolist(), run.target.matched(run.logits), strict=True)
        ):
            found = run.logits[row]
            score = 0.0 if match is None else float(found["scores"][match])
            box = boxes[row] if match is None else found["boxes"][match]
            image_box = list(framing.box_to_image(box.tolist()))
            scores.append(
                ClassScore(
                    index=index, label=model.label_of(index), probability=score, box=image_box
                )
            )
        return scores
    logits = run.logits
    assert isinstance(logits, torch.Tensor)
    probabilities = heads.probabilities(model.head, logits)  # (rows, K)
    shares = heads.pixel_shares(logits) if model.head == heads.SEGMENTATION else None
    indices = run.target.indices.tolist()
    return [
        ClassScore(
            index=index,
            label=model.label_of(index),
            probability=float(probabilities[row, index]),
            pixel_share=None if shares is None else float(shares[row, index]),
        )
        for row, index in enumerate(indices)
    ]


def input_box(model: LoadedModel, picture: Image.Image, box: Sequence[float] | None) -> Box | None:
    """A detection's box in the image's pixels -> in input pixels (None: none given; 422 on
    a model that is not a detector)."""
    if box is None:
        return None
    if model.head != heads.DETECTION:
        raise RegionError("a box chooses a detection: it applies to detectors only")
    return model.preprocessing.framing(picture.width, picture.height).box_to_input(box)


def input_region(model: LoadedModel, picture: Image.Image, region: ImageRegion) -> Region:
    """A region over the image's pixels (a box or a boolean mask) -> the same in input pixels."""
    if region is None:
        return None
    if model.head != heads.SEGMENTATION:
        raise RegionError("a region applies to segmentation models only")
    framing = model.preprocessing.framing(picture.width, picture.height)
    if isinstance(region, np.ndarray | torch.Tensor):
        if region.ndim != 2:
            raise RegionError(f"a region mask is (H, W), got {tuple(region.shape)}")
        return framing.mask_to_input(region)
    return framing.box_to_input(region)


def predictions_of(
    model: LoadedModel, logits: ModelOutput, k: int = 5, framing: Framing | None = None
) -> list[ClassScore]:
    """The first row's predictions: the top k classes; for a segmentation model every class
    some pixel is predicted as, by pixel share; for a detector every detection above its
    score threshold, highest first, with its box (in the image's pixels given its `framing`,
    else the input's)."""
    if not isinstance(logits, torch.Tensor):
        return [
            ClassScore(
                index=found.index,
                label=model.label_of(found.index),
                probability=found.score,
                box=list(found.box if framing is None else framing.box_to_image(found.box)),
            )
            for found in detections_above(logits[0], model.score_threshold)
        ]
    probabilities = heads.probabilities(model.head, logits)[0]  # (K,)
    if model.head != heads.SEGMENTATION:
        return _top_k(model, probabilities, k)
    shares = heads.pixel_shares(logits)[0]  # (K,)
    present = [int(i) for i in torch.argsort(shares, descending=True) if shares[i] > 0]
    return [
        ClassScore(
            index=i,
            label=model.label_of(i),
            probability=float(probabilities[i]),
            pixel_share=float(shares[i]),
        )
        for i in present
    ]


def _target_list(model: LoadedModel, target: Any) -> list[int]:
    if target is None:
        return []
    values = [target] if isinstance(target, int | str) else list(target)
    classes = len(model.categories) or 1000
    return list(dict.fromkeys(class_index(value, model.categories, classes) for value in values))


def _top_k(model: LoadedModel, probabilities: torch.Tensor, k: int) -> list[ClassScore]:
    values, indices = probabilities.topk(min(k, probabilities.numel()))
    return [
        ClassScore(index=int(i), label=model.label_of(int(i)), probability=float(v))
        for v, i in zip(values, indices, strict=True)
    ]
