"""Feature vectors: the input of the classifier head by default, any layer pooled, taken in
the forward the caller runs (no extra pass), no hook left behind."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlens
from cnnlens.errors import LayerNotFoundError
from cnnlens.features.vectors import feature_layer, pooled
from cnnlens.methods.run import run_methods
from cnnlens.models.hooks import count_hooks
from cnnlens.models.loaded import LoadedModel
from tests.audit.tiny_model import synthetic_png, tiny_loaded
from tests.methods.counting import counting
from tests.ownmodel.segmenters import wrapped_segmenter


def test_default_vector_is_the_classifier_input_of_the_default_model(
    default_model: LoadedModel, chelsea: Image.Image, coffee: Image.Image
) -> None:
    assert feature_layer(default_model).describe() == "classifier (input)"
    vectors = cnnlens.features(default_model, [chelsea, coffee])
    x = torch.cat([default_model.preprocessing(image) for image in (chelsea, coffee)])
    with torch.no_grad():
        expected = default_model.module.forward_features(x).mean(dim=(2, 3))  # (2, 1280)
    assert vectors.dtype == np.float32 and vectors.shape == (2, 1280)
    np.testing.assert_allclose(vectors, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert count_hooks(default_model.module) == 0


def test_any_layer_is_global_average_pooled() -> None:
    model = tiny_loaded()
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert feature_layer(model, "2").describe() == "2 (output)"
    vectors = cnnlens.features(model, x, layer="2")
    with torch.no_grad():
        expected = model.module[:3](x).mean(dim=(2, 3))  # conv, relu, conv: (3, 8)
    np.testing.assert_allclose(vectors, expected.numpy(), rtol=1e-5, atol=1e-6)
    # the default: the input of the Linear head, the pooled and flattened last activation
    assert feature_layer(model).describe() == "6 (input)"
    with torch.no_grad():
        head_input = model.module[:6](x)
    np.testing.assert_allclose(cnnlens.features(model, x), head_input.numpy(), rtol=1e-6)


def test_segmentation_vectors_pool_over_the_image() -> None:
    model = wrapped_segmenter(size=24)
    layer = feature_layer(model)
    assert (layer.layer, layer.side) == (model.default_layer, "output")
    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # the module is a Sequential: its layers are named by position
        expected = model.module[: int(layer.layer) + 1](x).mean(dim=(2, 3))
    np.testing.assert_allclose(cnnlens.features(model, x), expected.numpy(), rtol=1e-5)


def test_images_of_any_kind_give_the_same_vectors() -> None:
    model = tiny_loaded()
    data = synthetic_png(3)
    image = Image.open(io.BytesIO(data)).convert("RGB")
    from_bytes = cnnlens.features(model, [data])
    from_image = cnnlens.features(model, [image])
    from_array = cnnlens.features(model, [np.asarray(image)])
    np.testing.assert_array_equal(from_bytes, from_image)
    np.testing.assert_array_equal(from_bytes, from_array)


def test_unknown_layer_is_refused() -> None:
    with pytest.raises(LayerNotFoundError):
        cnnlens.features(tiny_loaded(), torch.zeros(1, 3, 32, 32), layer="nope")


def test_taps_ride_the_methods_forward() -> None:
    """run_methods with a feature tap: the same vectors as a pass of their own, and not one
    forward more than without the tap."""
    model = tiny_loaded()
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    tap = feature_layer(model).tap()
    with counting(model.module) as plain:
        run_methods(model, x, [("grad_cam", {})])
    with counting(model.module) as tapped:
        result = run_methods(model, x, [("grad_cam", {})], taps=[tap])
    assert tapped.forward_batches == plain.forward_batches
    np.testing.assert_allclose(
        result.tapped[tap.name].numpy(), cnnlens.features(model, x), rtol=1e-6, atol=1e-7
    )
    # a standalone method alone: the driver's no-grad forward carries the tap
    occlusion = run_methods(model, x, [("occlusion", {"window": 16, "stride": 16})], taps=[tap])
    np.testing.assert_allclose(
        occlusion.tapped[tap.name].numpy(), cnnlens.features(model, x), rtol=1e-6, atol=1e-7
    )
    assert count_hooks(model.module) == 0


def test_pooled_shapes() -> None:
    assert pooled(torch.ones(2, 5, 3, 3)).shape == (2, 5)
    assert pooled(torch.ones(2, 7)).shape == (2, 7)
    assert pooled(torch.ones(2, 3, 4)).shape == (2, 12)
    assert pooled(torch.ones(2, 7, dtype=torch.float16)).dtype == torch.float32
