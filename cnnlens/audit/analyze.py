"""The per-image work of an audit: predictions, maps, localization, fragility and flags for a
batch of images, with the thumbnails and overlays the report embeds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from cnnlens import render
from cnnlens.api.png import png_bytes
from cnnlens.audit.config import AuditConfig
from cnnlens.audit.detections import DetectionAudit
from cnnlens.audit.localization import boxes_to_mask, energy_share, is_degenerate, pointing_hit
from cnnlens.audit.pictures import bounded, jpeg, thumbnail
from cnnlens.audit.records import (
    FLAG_DEGENERATE,
    FLAG_FRAGILE,
    FLAG_LOW_CONFIDENCE,
    FLAG_MISCLASSIFIED,
    FLAG_OFF_OBJECT,
    FLAGS,
    MEAN_MAP_SIDE,
    AuditItem,
    AuditRecord,
    ImageOutcome,
    MapFindings,
    Prediction,
    error_outcome,
)
from cnnlens.audit.sources import readable
from cnnlens.errors import CnnlensError
from cnnlens.features.capture import FeatureCapture
from cnnlens.features.columns import pending_columns
from cnnlens.imageio import load_image
from cnnlens.methods.adversarial_image import adversarial_images
from cnnlens.methods.passes import heap_rows
from cnnlens.methods.run import RunResult, run_methods
from cnnlens.models import heads
from cnnlens.models.hooks import Tap
from cnnlens.models.loaded import LoadedModel
from cnnlens.progress import Tick

__all__ = ["FLAGS", "AuditAnalyzer", "ImageOutcome", "error_outcome"]


class AuditAnalyzer:
    """Turns a batch of AuditItems into ImageOutcomes with one model (one batched pass)."""

    def __init__(
        self, model: LoadedModel, config: AuditConfig, on_rungs: Tick | None = None
    ) -> None:
        self.model = model
        self.config = config
        self.on_rungs = on_rungs  # progress: fragility rungs run (or skipped after a flip)
        self.capture = FeatureCapture(model, config.features) if config.features.enabled else None

    def __call__(self, items: Sequence[AuditItem]) -> list[ImageOutcome]:
        outcomes: dict[int, ImageOutcome] = {}
        images: list[tuple[AuditItem, Image.Image]] = []
        for item in items:
            try:
                source = item.data if item.data is not None else readable(item.path)
                images.append((item, load_image(source, max_pixels=self.config.max_pixels)))
            except (CnnlensError, OSError) as error:
                outcomes[item.index] = error_outcome(item, _message(error))
        if images:
            for outcome in self._analyze(images):
                outcomes[outcome.index] = outcome
        return [outcomes[item.index] for item in items]

    def _analyze(self, images: list[tuple[AuditItem, Image.Image]]) -> list[ImageOutcome]:
        config, model = self.config, self.model
        if model.head == heads.DETECTION:
            return DetectionAudit(model, config)(images)
        x = torch.cat([model.preprocessing(image) for _, image in images]).to(model.device)
        result = self._run_in_passes(x, self.capture.taps if self.capture else [])
        logits = result.logits
        assert isinstance(logits, torch.Tensor)
        probabilities = heads.probabilities(model.head, logits).cpu()  # (B, K)
        predicted = probabilities.argmax(dim=1)
        photos = [image for _, image in images]
        fragile = self._fragility(photos, predicted) if config.fragility else None
        scores = [
            _class_scores(model, logits[row : row + 1], config.top_k) for row in range(len(x))
        ]
        outcomes = []
        for row, (item, image) in enumerate(images):
            maps = {name: result.outputs[name].map[row].float().cpu() for name in config.methods}
            small = thumbnail(image, config.thumbnail_side)
            outcome = self._outcome(
                item, image, small, scores[row], maps, result.layer, fragile, row
            )
            if self.capture is not None:
                outcome.features = self.capture.image(
                    row, result.tapped, probabilities, small, item.label is not None
                )
                for column, value in pending_columns().items():
                    setattr(outcome.record, column, value)
            outcomes.append(outcome)
        return outcomes

    def _run_in_passes(self, x: torch.Tensor, taps: Sequence[Tap]) -> RunResult:
        """run_methods over `x` in passes of at most `heap_rows` images (see
        methods/passes.py), joined row by row."""
        model, config = self.model, self.config
        methods: list[tuple[str, dict[str, Any]]] = [(name, {}) for name in config.methods]
        rows = heap_rows(model, x) or len(x)
        return RunResult.join(
            [
                run_methods(model, x[start : start + rows], methods, layer=config.layer, taps=taps)
                for start in range(0, len(x), rows)
            ]
        )

    def _outcome(
        self,
        item: AuditItem,
        image: Image.Image,
        thumbnail: Image.Image,
        scores: ClassScores,
        maps: dict[str, torch.Tensor],
        layer: str,
        fragile: list[Flip | None] | None,
        row: int,
    ) -> ImageOutcome:
        config, model = self.config, self.model
        top = scores.predictions[0]
        correct = _correct(model.head, item, scores.predicted)
        flags: list[str] = []
        if correct is False:
            flags.append(FLAG_MISCLASSIFIED)
        if scores.confidence < config.low_confidence:
            flags.append(FLAG_LOW_CONFIDENCE)
        outcome = ImageOutcome(
            item.index, AuditRecord(index=item.index, name=item.name)
        )  # row: below
        outcome.thumbnail = jpeg(thumbnail)
        region = self._region(item, image)
        findings = self._maps(outcome, image, maps, region, flags)
        flip = fragile[row] if fragile is not None else None
        if flip is not None and flip.epsilon <= config.fragile_at:
            flags.append(FLAG_FRAGILE)
        outcome.record = AuditRecord(
            index=item.index,
            name=item.name,
            status="ok",
            error=None,
            width=image.width,
            height=image.height,
            label=item.label,
            label_name=None if item.label is None else model.label_of(item.label),
            predicted=top.index,
            predicted_name=top.label,
            confidence=scores.confidence,
            correct=correct,
            predictions=scores.predictions,
            layer=layer,
            has_region=region is not None,
            maps=findings,
            fragility_tested=fragile is not None,
            fragile_epsilon=None if flip is None else flip.epsilon,
            fragile_class=None if flip is None else flip.index,
            fragile_class_name=None if flip is None else model.label_of(flip.index),
            fragile_probability=None if flip is None else flip.probability,
            flags=flags,
        )
        return outcome

    def _maps(
        self,
        outcome: ImageOutcome,
        image: Image.Image,
        maps: dict[str, torch.Tensor],
        region: np.ndarray | None,
        flags: list[str],
    ) -> dict[str, MapFindings]:
        """Each method's findings (their flags added to `flags`), overlay and thumbnail; the
        first method's class-mean map."""
        config = self.config
        findings: dict[str, MapFindings] = {}
        framing = self.model.preprocessing.framing(image.width, image.height)
        for position, (name, raw) in enumerate(maps.items()):
            on_image = render.to_2d(framing.place(raw))  # NaN outside a center crop
            entry = findings[name] = self._localize(raw, on_image, region)
            off_object = entry.pointing_hit is False or (
                entry.box_energy is not None and entry.box_energy < config.min_box_energy
            )
            for flag, raised in (
                (FLAG_OFF_OBJECT, off_object),
                (FLAG_DEGENERATE, entry.degenerate),
            ):
                if raised and flag not in flags:
                    flags.append(flag)
            blended = render.overlay(bounded(image, config.overlay_max_side), on_image)
            outcome.overlay_pngs[name] = png_bytes(blended)
            outcome.overlay_thumbnails[name] = jpeg(thumbnail(blended, config.thumbnail_side))
            if position == 0:
                small = render.resize_map(render.to_2d(raw), (MEAN_MAP_SIDE, MEAN_MAP_SIDE))
                outcome.mean_map = render.normalize_map(small).astype(np.float16).tobytes()
        return findings

    def _localize(
        self, raw: torch.Tensor, on_image: np.ndarray, region: np.ndarray | None
    ) -> MapFindings:
        """Degenerate or not; with an object region, its energy share and the pointing game."""
        degenerate = is_degenerate(raw.numpy())
        if region is None:
            return MapFindings(degenerate=degenerate, box_energy=None, pointing_hit=None)
        return MapFindings(
            degenerate=degenerate,
            box_energy=energy_share(on_image, region),
            pointing_hit=pointing_hit(on_image, region, self.config.pointing_tolerance),
        )

    def _region(self, item: AuditItem, image: Image.Image) -> np.ndarray | None:
        """The object's pixels from boxes and/or a mask (mask resized to the image)."""
        region = None
        if item.boxes:
            region = boxes_to_mask(item.boxes, image.height, image.width)
        mask_source = item.mask_data if item.mask_data is not None else item.mask_path
        if mask_source is not None:
            try:
                mask_image = load_image(mask_source).convert("L")
            except CnnlensError:
                return region
            if mask_image.size != image.size:
                mask_image = mask_image.resize(image.size, Image.Resampling.NEAREST)
            mask = np.asarray(mask_image) > 0
            region = mask if region is None else region | mask
        return region

    def _fragility(self, photos: list[Image.Image], predicted: torch.Tensor) -> list[Flip | None]:
        """Smallest epsilon of the ladder at which an untargeted PGD (Madry et al. 2018) flips
        the top-1 class of the saved 8-bit image at the photo's own size, decoded and
        preprocessed again as an upload; None when no rung does. Each rung runs the survivors."""
        config = self.config
        found: list[Flip | None] = [None] * len(photos)
        remaining = list(range(len(photos)))
        for rung, epsilon in enumerate(config.epsilons):
            if not remaining:
                break
            params = {
                "attack": "pgd",
                "epsilon": epsilon,
                "step_size": min(255.0, 2.5 * epsilon / config.pgd_steps),
                "steps": config.pgd_steps,
                "stop_on_success": True,
                "output_size": "image",
            }
            results = adversarial_images(
                self.model, [photos[row] for row in remaining], params,
                targets=[int(predicted[row]) for row in remaining],
            )  # fmt: skip
            tested = len(remaining)
            for row, result in zip(list(remaining), results, strict=True):
                if result.success:
                    found[row] = Flip(
                        epsilon, result.adversarial.index, result.adversarial.probability
                    )
                    remaining.remove(row)
            rungs_left = len(config.epsilons) - 1 - rung
            if self.on_rungs is not None:  # flipped images skip the rungs above this one
                self.on_rungs(tested + (tested - len(remaining)) * rungs_left)
        return found


@dataclass(frozen=True)
class Flip:
    """The first rung of the fragility ladder whose saved image changes the top-1 class."""

    epsilon: float  # 0-255 units, whole 8-bit levels
    index: int  # the class the saved image is predicted as
    probability: float


def _message(error: Exception) -> str:
    return error.message if isinstance(error, CnnlensError) else f"{type(error).__name__}: {error}"


MULTI_LABEL_THRESHOLD = 0.5
# A segmentation model predicts a class in an image when at least this share of its pixels
# is predicted as that class (specks of a few pixels do not count).
MIN_PIXEL_SHARE = 0.01


@dataclass(frozen=True)
class ClassScores:
    """One image's answer as an audit judges it."""

    predictions: list[Prediction]  # best first
    predicted: set[int]  # the classes predicted: top-1, or a set (sigmoid, segmentation)
    confidence: float  # the top class's probability (segmentation: over its own pixels)


def _class_scores(model: LoadedModel, logits: torch.Tensor, top_k: int) -> ClassScores:
    """(1, K) or (1, K, H, W) logits -> the top k predictions by probability, or for a
    segmentation model the top k classes present by pixel share."""
    probabilities = heads.probabilities(model.head, logits)[0].cpu()  # (K,)
    if model.head != heads.SEGMENTATION:
        order = probabilities.argsort(descending=True, stable=True)
        predictions = [
            Prediction(
                index=int(i), label=model.label_of(int(i)), probability=float(probabilities[i])
            )
            for i in order[:top_k]
        ]
        top = predictions[0].index
        predicted = (
            set(torch.nonzero(probabilities >= MULTI_LABEL_THRESHOLD).flatten().tolist())
            if model.head == "sigmoid"
            else {top}
        )
        return ClassScores(predictions, predicted, predictions[0].probability)
    shares = heads.pixel_shares(logits)[0].cpu()  # (K,)
    present = [int(i) for i in shares.argsort(descending=True, stable=True) if shares[i] > 0]
    predictions = [
        Prediction(
            index=i,
            label=model.label_of(i),
            probability=float(probabilities[i]),
            pixel_share=float(shares[i]),
        )
        for i in present[:top_k]
    ]
    top = present[0]
    own = logits[0].argmax(dim=0) == top  # (H, W) the pixels predicted as the top class
    confidence = float(logits[0].float().softmax(dim=0)[top][own].mean())
    return ClassScores(
        predictions, {i for i in present if shares[i] >= MIN_PIXEL_SHARE}, confidence
    )


def _correct(head: str, item: AuditItem, predicted: set[int]) -> bool | None:
    """Top-1 equals the label (softmax, binary); for sigmoid and segmentation heads the set
    of classes predicted (at or above the threshold; on at least MIN_PIXEL_SHARE of the
    pixels) equals the image's label set."""
    if item.label is None:
        return None
    if head in ("sigmoid", heads.SEGMENTATION):
        return predicted == set(item.labels or (item.label,))
    return predicted == {item.label}
