"""The size of an explain response, bounded before anything is rendered.

Rendering and encoding run at the image's own size, once per explanation (methods x targets)
and image output: their time follows the pixels rendered, their bytes the outputs asked for.
Both are estimated from the request alone and refused with a 422 before any work.
"""

from __future__ import annotations

from collections.abc import Collection

from cnnlens.errors import ResponseTooLargeError

IMAGE_OUTPUTS = ("heatmap", "overlay")
# Upper bounds per pixel, base64 included (4/3): a PNG never needs much more than its raw RGB
# bytes; an array holds float32 values.
_PNG_BYTES_PER_PIXEL = 3 * 4 / 3
_ARRAY_BYTES_PER_VALUE = 4 * 4 / 3


def response_size(
    width: int,
    height: int,
    explanations: int,
    outputs: Collection[str],
    *,
    array_channels: int = 1,
) -> tuple[int, int]:
    """(estimated body bytes, pixels rendered) of `explanations` maps at width x height."""
    pixels = width * height
    images = sum(output in outputs for output in IMAGE_OUTPUTS)
    rendered = pixels * explanations * images
    array = pixels * array_channels * _ARRAY_BYTES_PER_VALUE if "array" in outputs else 0.0
    body = explanations * (images * pixels * _PNG_BYTES_PER_PIXEL + array)
    return int(body), rendered


def check_response_size(
    width: int,
    height: int,
    n_targets: int,
    n_methods: int,
    outputs: Collection[str],
    *,
    max_bytes: int,
    max_rendered_pixels: int,
    array_channels: int = 1,
) -> None:
    """Raise ResponseTooLargeError (422 response_too_large) when the response would exceed
    `max_bytes` or render more than `max_rendered_pixels`; the message says how many targets
    would fit.

    Args:
        width, height: the uploaded image's size (maps are rendered at it).
        n_targets, n_methods: one explanation per (method, target).
        outputs: the requested outputs ("overlay", "heatmap", "array").
        array_channels: channels of the widest map (3 for guided backprop and its kin).
    """

    def fits(targets: int) -> bool:
        body, rendered = response_size(
            width, height, targets * n_methods, outputs, array_channels=array_channels
        )
        return body <= max_bytes and rendered <= max_rendered_pixels

    if fits(n_targets):
        return
    body, rendered = response_size(
        width, height, n_targets * n_methods, outputs, array_channels=array_channels
    )
    problems = []
    if body > max_bytes:
        problems.append(f"about {body / 1e6:.0f} MB, over the {max_bytes / 1e6:.0f} MB limit")
    if rendered > max_rendered_pixels:
        problems.append(
            f"{rendered / 1e6:.0f} megapixels to render, over the "
            f"{max_rendered_pixels / 1e6:.0f} megapixel limit"
        )
    advice = "fewer outputs or a smaller image"
    fitting = next((t for t in range(n_targets - 1, 0, -1) if fits(t)), None)
    if fitting is not None:
        advice = f"at most {fitting} targets, {advice}"
    raise ResponseTooLargeError(
        f"the response ({n_methods} method(s) x {n_targets} target(s) at {width}x{height}, "
        f"{', '.join(sorted(outputs))}) would be {' and '.join(problems)}; ask for {advice}"
    )
