"""What the routes hand their work to, by job: POST /v1/explain's batched rows and rendering
(`explain`), and the routes of methods with results of their own: one method on one image
(`single`), the image makers (`images`: adversarial, activation maximization) and the layer
views (`layers`: feature maps, filters).

`own_route(name)`: how a method's own route checks, runs and renders its request. Built-in
methods with bodies of their own (`cnnlens.api.models.METHOD_RESPONSES`) have handlers in
`_ROUTES`; any other registered method gets the generic `MethodResponse`.
"""

from __future__ import annotations

from cnnlens.service.handlers.images import (
    check_activation_max,
    check_adversarial,
    render_activation_max,
    render_adversarial,
    run_adversarial,
)
from cnnlens.service.handlers.layers import render_feature_maps, render_filters
from cnnlens.service.handlers.single import OwnRoute, SingleRun, render_method

__all__ = ["OwnRoute", "SingleRun", "own_route"]

_ROUTES = {
    "adversarial": OwnRoute(
        render_adversarial, check=check_adversarial, work=run_adversarial, preprocess=False
    ),
    "activation_max": OwnRoute(render_activation_max, check=check_activation_max),
    "feature_maps": OwnRoute(render_feature_maps),
    "filters": OwnRoute(render_filters),
}
_GENERIC = OwnRoute(render_method)


def own_route(name: str) -> OwnRoute:
    """How the route of the (non-map) method `name` is answered."""
    return _ROUTES.get(name, _GENERIC)
