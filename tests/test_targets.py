"""Targets as values: a class, a class over a region and a detection box compute their own
scores; `run_methods` takes them, and the old keyword forms mean the same targets."""

from __future__ import annotations

import pytest
import torch
from captum.attr import IntegratedGradients, Saliency

import cnnlens
from cnnlens.errors import TargetError
from cnnlens.methods.base import MethodContext
from cnnlens.models import count_hooks
from cnnlens.models.regions import RegionError, box_coverage
from cnnlens.targets import BoxTarget, ChannelTarget, ClassTarget, RegionTarget, Target, as_target
from tests.ownmodel.conftest import small_cnn
from tests.ownmodel.segmenters import wrapped_segmenter

BOX = (4.0, 6.0, 16.0, 20.0)  # x0, y0, x1, y1 in a 24 x 24 input


def _x(batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, 24, 24, generator=torch.Generator().manual_seed(seed))


def _resolve(target: Target, output: torch.Tensor, head: str = "softmax") -> Target:
    return target.resolve(output, head=head, categories=("cat", "dog", "fox"), input_size=(24, 24))


def test_class_target_scores_by_hand() -> None:
    logits = torch.tensor([[1.0, 3.0, -2.0], [0.5, -1.0, 4.0]])
    top = _resolve(ClassTarget(), logits)
    assert top.indices.tolist() == [1, 2]
    torch.testing.assert_close(top.score(logits), torch.tensor([3.0, 4.0]))
    named = _resolve(ClassTarget(["fox", 0]), logits)
    assert named.indices.tolist() == [2, 0]
    torch.testing.assert_close(named.score(logits), torch.tensor([-2.0, 0.5]))
    torch.testing.assert_close(named.loss(logits), -torch.log_softmax(logits, 1)[[0, 1], [2, 0]])
    # Rows of a batch that repeats its inputs (captum's n_steps): each keeps its target.
    tiled = torch.cat([logits, logits])
    rows = torch.tensor([0, 1, 0, 1])
    torch.testing.assert_close(named.score(tiled, rows), torch.tensor([-2.0, 0.5, -2.0, 0.5]))
    assert named.take(slice(1, 2)).indices.tolist() == [0]
    assert named.join([top]).indices.tolist() == [2, 0, 1, 2]
    z = torch.tensor([[2.0], [2.0]])  # a binary head's one logit: +z positive, -z negative
    binary = ClassTarget(["positive", "negative"]).resolve(
        z, head="binary", categories=("negative", "positive"), input_size=(24, 24)
    )
    torch.testing.assert_close(binary.score(z), torch.tensor([2.0, -2.0]))
    with pytest.raises(TargetError, match="unknown class label"):
        _resolve(ClassTarget("wolf"), logits)
    with pytest.raises(TargetError, match="3 targets for a batch of 2"):
        _resolve(ClassTarget([0, 1, 2]), logits)


def test_class_target_values_equal_the_keyword_forms_on_a_classifier() -> None:
    module = small_cnn(outputs=3, seed=3).eval()
    model = cnnlens.wrap(module, labels=["cat", "dog", "fox"], preprocessing={"input_size": 24})
    x = _x()
    by_value = cnnlens.run_methods(
        model, x, [("saliency", None), ("occlusion", {"window": 8, "stride": 8})],
        target=ClassTarget(["dog", 2]),
    )  # fmt: skip
    by_keyword = cnnlens.run_methods(
        model, x, [("saliency", None), ("occlusion", {"window": 8, "stride": 8})], target=[1, "fox"]
    )
    assert by_value.targets.tolist() == by_keyword.targets.tolist() == [1, 2]
    for name in ("saliency", "occlusion"):
        torch.testing.assert_close(by_value.outputs[name].map, by_keyword.outputs[name].map)
    assert isinstance(by_keyword.target, ClassTarget) and by_keyword.target.head == "softmax"
    one = cnnlens.attribute("saliency", model, x, target="dog")
    torch.testing.assert_close(one, cnnlens.attribute("saliency", model, x, target=ClassTarget(1)))
    reference = Saliency(module).attribute(x.clone().requires_grad_(), target=1, abs=True)
    torch.testing.assert_close(one, reference.amax(dim=1, keepdim=True), rtol=1e-4, atol=1e-7)
    assert count_hooks(module) == 0


def test_context_scores_serve_a_captum_forward_func() -> None:
    """captum expands inputs and additional args alike: each row keeps its own target."""
    module = small_cnn(outputs=3, seed=4).eval()
    x = _x()
    target = ClassTarget([0, 2]).resolve(
        module(x), head="softmax", categories=(), input_size=(24, 24)
    )
    context = MethodContext(module, x, target, "", None, None)  # type: ignore[arg-type]
    ours = IntegratedGradients(context.scores).attribute(
        x, additional_forward_args=(context.target_rows,), n_steps=8
    )
    theirs = IntegratedGradients(module).attribute(x, target=torch.tensor([0, 2]), n_steps=8)
    torch.testing.assert_close(ours, theirs)


def test_region_target_values_equal_the_keyword_forms_on_a_segmenter() -> None:
    model = wrapped_segmenter()
    x = _x(1, seed=2)
    value = cnnlens.attribute("saliency", model, x, target=RegionTarget("sky", region=BOX))
    keyword = cnnlens.attribute("saliency", model, x, target="sky", region=BOX)
    torch.testing.assert_close(value, keyword)
    # By hand: the gradient of sum_ij w_ij y^sky_ij, w the box's coverage.
    weights = box_coverage(BOX, (24, 24))
    inputs = x.clone().requires_grad_()
    (model.module(inputs)[0, 1] * weights).sum().backward()
    assert inputs.grad is not None
    torch.testing.assert_close(value, inputs.grad.abs().amax(dim=1, keepdim=True))
    result = cnnlens.run_methods(model, x, [("grad_cam", None)], target=RegionTarget("sky", BOX))
    assert isinstance(result.target, RegionTarget) and result.target.weights is not None
    torch.testing.assert_close(result.target.weights[0], weights)
    default = cnnlens.run_methods(model, x, [("saliency", None)])  # top class, its pixels
    assert isinstance(default.target, RegionTarget)
    predicted = (model.module(x).argmax(dim=1) == default.targets[0]).float()
    torch.testing.assert_close(default.target.weights, predicted)
    with pytest.raises(RegionError, match="inside the RegionTarget"):
        cnnlens.attribute("saliency", model, x, target=RegionTarget("sky"), region=BOX)
    with pytest.raises(RegionError, match="segmentation models only"):
        as_target(3, "softmax", 1, region=BOX)


def _detections(scores: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """Two images' detections in torchvision's format (boxes x0, y0, x1, y1)."""
    return [
        {
            "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [2.0, 0.0, 12.0, 10.0]]),
            "labels": torch.tensor([1, 2]),
            "scores": scores[:2],
        },
        {
            "boxes": torch.tensor([[20.0, 20.0, 30.0, 30.0]]),
            "labels": torch.tensor([1]),
            "scores": scores[2:],
        },
    ]


def test_box_target_is_iou_plus_score_of_the_best_match_with_its_label() -> None:
    scores = torch.tensor([0.9, 0.8, 0.7], requires_grad=True)
    output = _detections(scores)
    # Row 0: label 2 at (2, 0, 12, 10) matches detection 1 exactly: 1 + 0.8. Row 1: label 1
    # at (20, 20, 30, 35): IoU 100 / 150, above 0.5.
    target = BoxTarget([2, 1], [[2.0, 0.0, 12.0, 10.0], [20.0, 20.0, 30.0, 35.0]])
    resolved = target.resolve(output, head="softmax", categories=(), input_size=(32, 32))
    value = resolved.score(output)
    torch.testing.assert_close(value, torch.tensor([1.0 + 0.8, 100 / 150 + 0.7]))
    value.sum().backward()
    assert scores.grad is not None and scores.grad.tolist() == [0.0, 1.0, 1.0]
    torch.testing.assert_close(resolved.loss(output), -value.detach())
    # Label 1 in image 0: detection 0 overlaps (2, 0, 12, 10) with IoU 80 / 120 and has it.
    one_label = BoxTarget(1, [2.0, 0.0, 12.0, 10.0]).resolve(
        output, head="softmax", categories=(), input_size=(32, 32)
    )
    assert float(one_label.score(output)[0].detach()) == pytest.approx(80 / 120 + 0.9)
    # No detection of that label, or one below the IoU threshold: 0.
    assert float(one_label.score(output)[1].detach()) == 0.0
    strict = BoxTarget(1, [2.0, 0.0, 12.0, 10.0], iou_threshold=0.7)
    resolved_strict = strict.resolve(output, head="softmax", categories=(), input_size=(32, 32))
    assert resolved_strict.score(output).tolist() == [0.0, 0.0]
    named = BoxTarget("dog", [0, 0, 4, 4]).resolve(
        output, head="softmax", categories=("cat", "dog"), input_size=(32, 32)
    )
    assert named.indices.tolist() == [1, 1]
    assert resolved.take(slice(1, 2)).score(output[1:]).shape == (1,)
    assert resolved.join([resolved]).indices.tolist() == [2, 1, 2, 1]
    with pytest.raises(RegionError, match="x0 < x1"):
        BoxTarget(1, [5, 0, 1, 4]).resolve(output, head="softmax", categories=(), input_size=(8, 8))
    with pytest.raises(TargetError, match="detector"):
        resolved.score(torch.zeros(2, 3))


def test_box_target_explains_a_toy_detector_by_its_input_gradient() -> None:
    """A detector whose one detection's score is a linear function of the input."""
    weights = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(0))

    def detector(x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        score = torch.sigmoid((x * weights).sum(dim=(1, 2, 3)))  # (B,)
        box = torch.tensor([[1.0, 1.0, 5.0, 5.0]])
        return [{"boxes": box, "labels": torch.tensor([3]), "scores": s[None]} for s in score]

    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), requires_grad=True)
    target = BoxTarget(3, [1.0, 1.0, 5.0, 5.0])
    resolved = target.resolve(detector(x), head="softmax", categories=(), input_size=(8, 8))
    (gradient,) = torch.autograd.grad(resolved.score(detector(x)).sum(), x)
    sigmoid = torch.sigmoid((x * weights).sum(dim=(1, 2, 3))).detach()
    expected = (sigmoid * (1 - sigmoid)).view(-1, 1, 1, 1) * weights
    torch.testing.assert_close(gradient, expected)


def test_channel_target_is_a_channels_mean_activation() -> None:
    activations = torch.arange(16.0).view(1, 4, 2, 2)
    assert ChannelTarget("layer", 2).score(activations).tolist() == [9.5]
    from cnnlens.errors import InvalidParamsError

    with pytest.raises(InvalidParamsError, match="out of range"):
        ChannelTarget("layer", 4).score(activations)
