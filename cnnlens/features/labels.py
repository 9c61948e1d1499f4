"""Label issues (cleanlab): images whose given label the audited model's probabilities make
unlikely.

The probabilities are the audited model's own on these very images, not out-of-sample
predictions as confident learning assumes (cross-validated ones): images the model was
trained on look cleaner than they are, and an honest mistake of the model looks like a label
error. The findings are leads to check, not verdicts.

On an audit with enough examples of each labelled class (at least MIN_IMAGES labelled images,
MIN_PER_CLASS of each of two or more classes), cleanlab's `find_label_issues` (confident
learning, prune by noise rate) runs on the probabilities of the labelled classes (renormalized
over them: the task the audit covers). A small audit, or one where most classes have few
examples, gets cleanlab's self-confidence ranking instead: the label's probability, flagged
below `label_issue_confidence`. (On 4 flipped labels of a small audit over 1000 classes,
find_label_issues found 1, the self-confidence ranking all 4 with no false flag.)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

MIN_IMAGES = 50
MIN_PER_CLASS = 5
SELF_CONFIDENCE = "self_confidence"
CONFIDENT_LEARNING = "find_label_issues"


@dataclass(frozen=True)
class LabelIssues:
    flagged: np.ndarray  # (N,) bool
    scores: np.ndarray  # (N,) float: 1 - the label's quality score (higher: more suspect)
    method: str  # SELF_CONFIDENCE or CONFIDENT_LEARNING


def method_for(labels: np.ndarray) -> str:
    """Confident learning where every labelled class has enough examples, else the
    self-confidence ranking."""
    counts = Counter(labels.tolist())
    enough = len(labels) >= MIN_IMAGES and len(counts) >= 2
    return (
        CONFIDENT_LEARNING if enough and min(counts.values()) >= MIN_PER_CLASS else SELF_CONFIDENCE
    )


def find_label_issues(
    labels: np.ndarray, probabilities: np.ndarray, classes: np.ndarray, threshold: float
) -> LabelIssues:
    """`labels` (N,) class indices of the model; `probabilities` (N, L) the model's
    probabilities of the L labelled `classes` (sorted class indices, not renormalized)."""
    from cleanlab.filter import find_label_issues as confident_learning
    from cleanlab.rank import get_label_quality_scores

    position = {int(c): i for i, c in enumerate(classes)}
    given = np.array([position[int(label)] for label in labels], np.int64)
    if method_for(labels) == SELF_CONFIDENCE:
        quality = get_label_quality_scores(given, probabilities, method=SELF_CONFIDENCE)
        return LabelIssues(quality < threshold, 1.0 - quality, SELF_CONFIDENCE)
    restricted = probabilities / np.maximum(probabilities.sum(axis=1, keepdims=True), 1e-12)
    quality = get_label_quality_scores(given, restricted, method=SELF_CONFIDENCE)
    flagged = confident_learning(given, restricted, n_jobs=1)
    return LabelIssues(np.asarray(flagged, bool), 1.0 - quality, CONFIDENT_LEARNING)
