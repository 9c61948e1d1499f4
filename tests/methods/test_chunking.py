"""Memory bounded by construction: chunked methods give the same result at any chunk size,
and no forward ever sees more rows than the chunk (counted by a forward-pre-hook)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from cnnlens.methods import run_methods
from cnnlens.models import count_hooks
from tests.methods.counting import counting
from tests.methods.test_cost import LAYER, SIDE, counted_model

# (method, params but the chunk, the rows that one unchunked forward would take)
CHUNKED: list[tuple[str, dict[str, Any], int]] = [
    ("smoothgrad", {"samples": 7}, 7 * 3),
    ("integrated_gradients", {"steps": 5}, 5 * 3),
    ("score_cam", {"channels": "all"}, 8),  # per image: one masked copy per channel
    ("occlusion", {"window": 8, "stride": 4, "engine": "dense"}, 5 * 5),  # windows per image
    ("activation_max", {"steps": 4, "jitter": 2, "blur_every": 2}, 3),
]
CHUNKS = [1, 2, 5, 64]


def three_rows() -> torch.Tensor:
    generator = torch.Generator().manual_seed(11)
    return torch.randn(3, 3, SIDE, SIDE, generator=generator)


@pytest.mark.parametrize(("name", "params", "rows"), CHUNKED, ids=[c[0] for c in CHUNKED])
def test_results_do_not_depend_on_the_chunk_and_forwards_follow_it(
    name: str, params: dict[str, Any], rows: int
) -> None:
    model = counted_model()
    x = three_rows()
    results = []
    for chunk in CHUNKS:
        with counting(model) as passes:
            run = run_methods(
                model, x, [(name, {**params, "batch_size": chunk})], target=[0, 2, 4], layer=LAYER
            )
        results.append(run.outputs[name].map)
        # The driver's own forward takes the 3 rows; every chunked forward at most `chunk`.
        assert passes.forward_batches[0] == 3
        chunked = passes.forward_batches[1:]
        if name == "score_cam":  # its one forward of the images for their activations
            chunked = [rows for rows in chunked if rows != 3]
        assert max(chunked) == min(chunk, rows)
    assert count_hooks(model) == 0
    for other in results[1:]:
        torch.testing.assert_close(other, results[0], rtol=1e-4, atol=1e-6)


def test_smoothgrad_memory_follows_the_chunk_not_samples_times_targets() -> None:
    """1024 samples x 3 targets in chunks of 4: never more than 4 rows in one forward."""
    model = counted_model()
    with counting(model) as passes:
        run_methods(
            model,
            three_rows(),
            [("smoothgrad", {"samples": 1024, "batch_size": 4})],
            target=[0, 2, 4],
        )
    assert passes.forward_batches[0] == 3
    assert set(passes.forward_batches[1:]) == {4}
    assert sum(passes.forward_batches[1:]) == 1024 * 3


def test_smoothgrad_draws_the_same_noise_as_one_whole_draw() -> None:
    """The noise of sample s is the s-th draw of the seeded generator, as if all were drawn
    at once: the map equals the mean gradient at those points, computed here directly."""
    model = counted_model()
    x = three_rows()[:1]
    samples, level = 3, 0.15
    run = run_methods(
        model,
        x,
        [("smoothgrad", {"samples": samples, "reduce": "none", "batch_size": 2})],
        target=1,
    )
    generator = torch.Generator().manual_seed(0)
    sigma = level * (x.max() - x.min())
    noise = [torch.randn(x.shape, generator=generator) for _ in range(samples)]
    expected = torch.zeros_like(x)
    for draw in noise:
        point = (x + sigma * draw).requires_grad_(True)
        (gradient,) = torch.autograd.grad(model(point)[0, 1], point)
        expected += gradient / samples
    torch.testing.assert_close(run.outputs["smoothgrad"].map, expected, rtol=1e-4, atol=1e-6)
