"""The audit's summary: accuracy, per-class accuracy, confusion pairs, most confident
mistakes, flag counts and class-mean maps."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cnnlens.audit.records import FLAGS, MEAN_MAP_SIDE


def summarize(records: Sequence[Mapping[str, Any]], mistakes: int = 10) -> dict[str, Any]:
    """JSON-ready summary of the finished records."""
    ok = [r for r in records if r.get("status") == "ok"]
    labelled = [r for r in ok if r.get("correct") is not None]
    correct = [r for r in labelled if r["correct"]]
    per_class: dict[int, dict[str, Any]] = {}
    for record in labelled:
        entry = per_class.setdefault(
            record["label"], {"label": record["label"], "name": record["label_name"], "n": 0,
                              "correct": 0},
        )  # fmt: skip
        entry["n"] += 1
        entry["correct"] += int(record["correct"])
    for entry in per_class.values():
        entry["accuracy"] = entry["correct"] / entry["n"]
    pairs = Counter(
        (r["label"], r["label_name"], r["predicted"], r["predicted_name"])
        for r in labelled
        if not r["correct"]
    )
    wrong = sorted((r for r in labelled if not r["correct"]), key=lambda r: -r["confidence"])
    flag_counts = {flag: sum(flag in r.get("flags", ()) for r in records) for flag in FLAGS}
    return {
        "images": len(records),
        "analyzed": len(ok),
        "errors": len(records) - len(ok),
        "labelled": len(labelled),
        "accuracy": len(correct) / len(labelled) if labelled else None,
        "per_class": sorted(per_class.values(), key=lambda e: (e["accuracy"], -e["n"])),
        "confusion_pairs": [
            {"label": t, "label_name": tn, "predicted": p, "predicted_name": pn, "count": n}
            for (t, tn, p, pn), n in pairs.most_common()
        ],
        "confident_mistakes": [
            {
                "index": r["index"],
                "name": r["name"],
                "label_name": r["label_name"],
                "predicted_name": r["predicted_name"],
                "confidence": r["confidence"],
            }  # fmt: skip
            for r in wrong[:mistakes]
        ],
        "flagged": sum(bool(r.get("flags")) for r in records),
        "flag_counts": flag_counts,
        "mean_confidence": float(np.mean([r["confidence"] for r in ok])) if ok else None,
    }


def class_mean_maps(
    records: Sequence[Mapping[str, Any]], maps: Mapping[int, bytes], limit: int = 12
) -> list[dict[str, Any]]:
    """Per predicted class (most frequent first): the mean of the images' normalized maps,
    (MEAN_MAP_SIDE, MEAN_MAP_SIDE) on the model's input grid."""
    groups: dict[int, list[np.ndarray]] = {}
    names: dict[int, str] = {}
    for record in records:
        data = maps.get(record["index"])
        if record.get("status") != "ok" or data is None:
            continue
        array = np.frombuffer(data, dtype=np.float16).astype(np.float32)
        groups.setdefault(record["predicted"], []).append(
            array.reshape(MEAN_MAP_SIDE, MEAN_MAP_SIDE)
        )
        names[record["predicted"]] = record["predicted_name"]
    ordered = sorted(groups.items(), key=lambda item: -len(item[1]))[:limit]
    return [
        {"class": index, "name": names[index], "n": len(arrays), "map": np.mean(arrays, axis=0)}
        for index, arrays in ordered
    ]
