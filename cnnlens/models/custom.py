"""A user's own model: labels files, heads and `wrap` for a module already in memory."""

from __future__ import annotations

import json
import warnings
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from cnnlens.errors import CnnlensError
from cnnlens.models.heads import BINARY_LABELS, check_head
from cnnlens.models.loaded import LoadedModel
from cnnlens.models.preprocess import Preprocessing

Labels = str | Path | Sequence[str] | None
PreprocessingSpec = Preprocessing | Mapping[str, Any] | None


class LabelsError(CnnlensError):
    """A labels file that cannot be read, or whose count does not match the model."""

    code = "bad_labels"
    status = 422


def read_labels(labels: str | Path | Sequence[str]) -> tuple[str, ...]:
    """Labels from a list, a JSON list file, or a text file with one label per line."""
    if isinstance(labels, str | Path):
        path = Path(labels)
        if not path.is_file():
            raise LabelsError(f"labels file not found: {path.name}")
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            try:
                values = json.loads(text)
            except json.JSONDecodeError as error:
                raise LabelsError(f"labels file {path.name} is not JSON: {error}") from error
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise LabelsError(f"labels file {path.name} must hold a JSON list of strings")
            return tuple(values)
        return tuple(line.strip() for line in text.splitlines() if line.strip())
    values = list(labels)
    if not all(isinstance(value, str) for value in values):
        raise LabelsError("labels must be strings")
    return tuple(values)


def fit_labels(
    labels: Labels, outputs: int | None, head: str, default: tuple[str, ...]
) -> tuple[str, ...]:
    """The model's class names; their count must equal the head's classes."""
    classes = 2 if head == "binary" else outputs
    if labels is None:
        if head == "binary":
            return BINARY_LABELS
        return default
    names = read_labels(labels)
    if classes is not None and len(names) != classes:
        raise LabelsError(
            f"{len(names)} labels given, but the model's {head} head has {classes} classes"
        )
    return names


def output_count(module: nn.Module) -> int | None:
    """Number of outputs of the last linear or 1x1-convolution layer, if any."""
    last: int | None = None
    for child in module.modules():
        if isinstance(child, nn.Linear):
            last = child.out_features
        elif isinstance(child, nn.Conv2d) and child.kernel_size == (1, 1):
            last = child.out_channels
    return last


def wrap(
    module: nn.Module,
    labels: Labels = None,
    preprocessing: PreprocessingSpec = None,
    head: str | None = None,
    name: str = "custom",
) -> LoadedModel:
    """A LoadedModel around a module already in memory, for every cnnlens front.

    The module is left as it is (training flags, requires_grad, hooks, buffers): every
    cnnlens call runs it in eval mode with frozen parameters inside its hook session and
    restores them after, on error too, so that training can go on between explanations. A
    module in train mode gets one warning (its `was_training` flag stays set). `head` None
    detects it: "segmentation" when the module returns (B, K, H, W) logits (or a dict with
    them under "out", torchvision's segmentation models), else "softmax".
    """
    from cnnlens.models.segmentation import head_of, plain_output

    asked: str | None = None if head is None else check_head(head)
    if isinstance(preprocessing, Preprocessing):
        prep = preprocessing
    else:
        prep = Preprocessing.from_mapping(preprocessing or {})
    was_training = module.training
    warn_train_mode(module, name)
    head_name = asked or "softmax"
    if asked in (None, "segmentation"):  # one probe forward tells a segmentation model
        module, output = plain_output(module, prep)
        head_name = head_of(output, asked)
        outputs = int(output.shape[1]) if head_name == "segmentation" else output_count(module)
    else:
        outputs = output_count(module)
    categories = fit_labels(labels, outputs, head_name, tuple(str(i) for i in range(outputs or 0)))
    return LoadedModel(
        name=name,
        module=module,
        preprocessing=prep,
        categories=categories,
        weights_sha256=None,
        weights_source="in-memory",
        head=head_name,
        was_training=was_training,
    )


_WARNED: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def warn_train_mode(module: nn.Module, name: str) -> None:
    """Once per module: it is in train mode, and cnnlens explains it in eval mode."""
    if module.training and module not in _WARNED:
        _WARNED.add(module)
        warnings.warn(
            f"model {name!r} is in train mode; cnnlens explains it in eval mode (dropout off, "
            "batch-norm running statistics) and leaves its mode as it is",
            stacklevel=3,
        )
