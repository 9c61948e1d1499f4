"""The per-image work of a detector's audit: its detections matched against the labelled boxes
(matched, missed and false ones, precision and recall), each detection's maps and whether
their energy lies in its box, the fragility of its top detection, and thumbnails with the
boxes drawn."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from cnnlens import render
from cnnlens.api.models import ClassScore
from cnnlens.api.png import png_bytes
from cnnlens.audit.config import AuditConfig
from cnnlens.audit.localization import Box, boxes_to_mask, energy_share, is_degenerate
from cnnlens.audit.matching import Matching, match_detections
from cnnlens.audit.pictures import bounded, jpeg, thumbnail
from cnnlens.audit.records import (
    FLAG_DEGENERATE,
    FLAG_FALSE_DETECTION,
    FLAG_FRAGILE,
    FLAG_LOW_CONFIDENCE,
    FLAG_MISSED_OBJECT,
    FLAG_OFF_OBJECT,
    MEAN_MAP_SIDE,
    AuditItem,
    AuditRecord,
    DetectionCounts,
    DetectionMap,
    ImageOutcome,
    MapFindings,
    Prediction,
)
from cnnlens.boxes import draw_detections
from cnnlens.methods.run import run_methods
from cnnlens.models.detection import Detection, detect
from cnnlens.models.framing import Framing
from cnnlens.models.hooks import hook_session
from cnnlens.models.loaded import LoadedModel
from cnnlens.targets import BoxTarget

_OBJECT = (46, 204, 64)  # a labelled box, on the thumbnails
_LEVELS = 255.0


@dataclass(frozen=True)
class _Image:
    """One image being audited, with what the model detects in it."""

    item: AuditItem
    picture: Image.Image
    x: torch.Tensor  # (1, 3, H, W) preprocessed
    framing: Framing
    found: list[Detection]  # above the threshold, boxes in input pixels, best first

    def on_image(self, detection: Detection) -> Box:
        return self.framing.box_to_image(detection.box)


class DetectionAudit:
    """Turns a batch of images into ImageOutcomes with a detector: one detection forward, then
    one run of the methods over every explained detection of the batch."""

    def __init__(self, model: LoadedModel, config: AuditConfig) -> None:
        self.model = model
        self.config = config

    def __call__(self, images: Sequence[tuple[AuditItem, Image.Image]]) -> list[ImageOutcome]:
        model = self.model
        x = torch.cat([model.preprocessing(picture) for _, picture in images]).to(model.device)
        found = detect(model, x)
        batch = [
            _Image(item, picture, x[row : row + 1], self._framing(picture), found[row])
            for row, (item, picture) in enumerate(images)
        ]
        maps, layer = self._maps(batch)
        return [self._outcome(image, maps[row], layer) for row, image in enumerate(batch)]

    def _framing(self, picture: Image.Image) -> Framing:
        return self.model.preprocessing.framing(picture.width, picture.height)

    def _maps(
        self, batch: Sequence[_Image]
    ) -> tuple[list[dict[str, list[torch.Tensor]]], str | None]:
        """Per image, per method, the maps of its explained detections (the top `top_k`),
        and the layer they used."""
        top_k = self.config.top_k
        rows = [(row, d) for row, image in enumerate(batch) for d in image.found[:top_k]]
        per_image: list[dict[str, list[torch.Tensor]]] = [
            {name: [] for name in self.config.methods} for _ in batch
        ]
        if not rows:
            return per_image, self.config.layer
        x = torch.cat([batch[row].x for row, _ in rows])
        target = BoxTarget([d.index for _, d in rows], [list(d.box) for _, d in rows])
        methods: list[tuple[str, dict[str, Any]]] = [(name, {}) for name in self.config.methods]
        result = run_methods(self.model, x, methods, target=target, layer=self.config.layer)
        for position, (row, _) in enumerate(rows):
            for name in self.config.methods:
                per_image[row][name].append(result.outputs[name].map[position].float().cpu())
        return per_image, result.layer

    def _outcome(
        self, image: _Image, maps: dict[str, list[torch.Tensor]], layer: str | None
    ) -> ImageOutcome:
        config, model, item = self.config, self.model, image.item
        boxes = [image.on_image(d) for d in image.found]
        labelled = len(item.labels) == len(item.boxes)
        labels = list(item.labels) if labelled else None
        matching = match_detections(boxes, [d.index for d in image.found], item.boxes, labels)
        flags: list[str] = []
        if matching.missed:
            flags.append(FLAG_MISSED_OBJECT)
        if matching.false:
            flags.append(FLAG_FALSE_DETECTION)
        top = image.found[0] if image.found else None
        if top is not None and top.score < config.low_confidence:
            flags.append(FLAG_LOW_CONFIDENCE)
        outcome = ImageOutcome(item.index, AuditRecord(index=item.index, name=item.name))
        scores = [
            ClassScore(
                index=d.index, label=model.label_of(d.index), probability=d.score, box=list(box)
            )
            for d, box in zip(image.found, boxes, strict=True)
        ]
        map_records: dict[str, MapFindings] = {}
        for position, (name, explained) in enumerate(maps.items()):
            entry = map_records[name] = self._localize(image, boxes, explained)
            for flag, raised in (
                (FLAG_OFF_OBJECT, any(d.off_object for d in entry.detections)),
                (FLAG_DEGENERATE, entry.degenerate),
            ):
                if raised and flag not in flags:
                    flags.append(flag)
            if explained:  # the top detection's map, with every box drawn
                on_image = render.to_2d(image.framing.place(explained[0]))
                shown = bounded(image.picture, config.overlay_max_side)
                blended = render.overlay(shown, render.resize_map(on_image, shown.size[::-1]))
                drawn = self._drawn(blended, image, scores, matching, scores[0])
                outcome.overlay_pngs[name] = png_bytes(drawn)
                outcome.overlay_thumbnails[name] = jpeg(thumbnail(drawn, config.thumbnail_side))
                if position == 0:
                    grid = render.resize_map(render.to_2d(explained[0]), (MEAN_MAP_SIDE,) * 2)
                    outcome.mean_map = render.normalize_map(grid).astype(np.float16).tobytes()
        small = thumbnail(image.picture, config.thumbnail_side)
        outcome.thumbnail = jpeg(self._drawn(small, image, scores, matching, None))
        fragile = self._fragility(image) if config.fragility and top is not None else None
        if fragile is not None and fragile <= config.fragile_at:
            flags.append(FLAG_FRAGILE)
        outcome.record = self._record(image, scores, matching, map_records, flags, fragile)
        outcome.record.layer = layer
        return outcome

    def _record(
        self,
        image: _Image,
        scores: list[ClassScore],
        matching: Matching,
        map_records: dict[str, MapFindings],
        flags: list[str],
        fragile: float | None,
    ) -> AuditRecord:
        item, model = image.item, self.model
        top = scores[0] if scores else None
        labelled = bool(item.boxes)
        return AuditRecord(
            index=item.index,
            name=item.name,
            status="ok",
            error=None,
            width=image.picture.width,
            height=image.picture.height,
            label=item.label,
            label_name=None if item.label is None else model.label_of(item.label),
            predicted=None if top is None else top.index,
            predicted_name="nothing detected" if top is None else top.label,
            confidence=0.0 if top is None else top.probability,
            correct=(not matching.missed and not matching.false) if labelled else None,
            predictions=[_prediction(score) for score in scores],
            detection=_detection_record(item, matching, model),
            layer=self.config.layer,
            has_region=labelled,
            maps=map_records,
            fragility_tested=self.config.fragility and top is not None,
            fragile_epsilon=fragile,
            fragile_class=None,
            fragile_class_name=None if fragile is None else "lost",
            fragile_probability=None,
            flags=flags,
        )

    def _localize(
        self, image: _Image, boxes: list[Box], explained: list[torch.Tensor]
    ) -> MapFindings:
        """Each explained detection's map: its energy share inside the detection's own box;
        off the object below `min_box_energy`. The top detection's values head the entry."""
        height, width = image.picture.height, image.picture.width
        detections = []
        for box, raw in zip(boxes, explained, strict=False):
            on_image = render.to_2d(image.framing.place(raw))
            energy = energy_share(on_image, boxes_to_mask([box], height, width))
            detections.append(
                DetectionMap(
                    box=[round(v, 2) for v in box],
                    box_energy=energy,
                    off_object=energy is not None and energy < self.config.min_box_energy,
                    degenerate=is_degenerate(raw.numpy()),
                )
            )
        return MapFindings(
            degenerate=any(d.degenerate for d in detections),
            box_energy=detections[0].box_energy if detections else None,
            pointing_hit=None,
            detections=detections,
        )

    def _drawn(
        self,
        picture: Image.Image,
        image: _Image,
        scores: list[ClassScore],
        matching: Matching,
        highlight: ClassScore | None,
    ) -> Image.Image:
        """`picture` (the image at any size) with the labelled boxes (green) and the
        detections (the explained one white) drawn."""
        scale = picture.width / image.picture.width
        item = image.item
        names = [self.model.label_of(i) for i in item.labels] if item.labels else []
        objects = [
            ClassScore(
                index=-1,
                label=names[i] if i < len(names) else "object",
                probability=1.0,
                box=list(box),
            )
            for i, box in enumerate(item.boxes)
        ]
        drawn = draw_detections(picture, objects, None, scale, colour=_OBJECT, scores=False)
        return draw_detections(drawn, scores, highlight, scale)

    def _fragility(self, image: _Image) -> float | None:
        """The first epsilon (0-255) of the ladder at which an L-inf PGD on the model's input
        view (8-bit levels) makes the top detection's box score 0, or its score fall below
        the threshold: the detection is lost. None: no rung loses it."""
        model, config = self.model, self.config
        top = image.found[0]
        target = BoxTarget(torch.tensor([top.index]), torch.tensor([top.box]))  # resolved
        prep = model.preprocessing
        pixels = prep.denormalize(image.x).clamp(0, 1)
        for epsilon in config.epsilons:
            attacked = _box_attack(model, target, pixels, epsilon / _LEVELS, config.pgd_steps)
            saved = torch.round(attacked * _LEVELS) / _LEVELS  # an 8-bit image
            with hook_session(model.module), torch.no_grad():
                output = model.module(prep.normalize(saved))
            (match,) = target.matched(output)
            if match is None or float(output[0]["scores"][match]) < model.score_threshold:
                return float(epsilon)
        return None


def _box_attack(
    model: LoadedModel, target: BoxTarget, pixels: torch.Tensor, budget: float, steps: int
) -> torch.Tensor:
    """PGD (Madry et al. 2018) that lowers the box score, in [0, 1] pixels within +-budget."""
    prep = model.preprocessing
    low, high = (pixels - budget).clamp(min=0), (pixels + budget).clamp(max=1)
    step = 2.5 * budget / steps
    current = pixels.clone()
    with hook_session(model.module) as session, torch.enable_grad():
        for _ in range(steps):
            score = target.score(session.forward(prep.normalize(current), input_grad=True))
            assert session.input is not None
            (gradient,) = session.gradients(score, [session.input], retain_graph=False)
            # d/dpixels = d/dinput / std: the same sign, which is all a step moves by
            current = torch.maximum(torch.minimum(current - step * gradient.sign(), high), low)
    return current


def _detection_record(item: AuditItem, matching: Matching, model: LoadedModel) -> DetectionCounts:
    """Matched, missed and false detections of one image, with precision and recall."""
    return DetectionCounts(
        objects=len(item.boxes),
        matched=len(matching.matched),
        missed=len(matching.missed),
        false=len(matching.false),
        precision=matching.precision,
        recall=matching.recall if item.boxes else None,
        matches=[
            {"detection": d, "object": o, "iou": round(iou, 4)} for d, o, iou in matching.matched
        ],
        missed_objects=[
            {
                "label": model.label_of(item.labels[o]) if o < len(item.labels) else None,
                "box": list(item.boxes[o]),
            }
            for o in matching.missed
        ],
        false_detections=matching.false,
    )


def _prediction(score: ClassScore) -> Prediction:
    assert score.box is not None
    return Prediction(
        index=score.index,
        label=score.label,
        probability=score.probability,
        box=[round(v, 2) for v in score.box],
    )
