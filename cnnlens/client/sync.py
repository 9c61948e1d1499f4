"""Client: the blocking Python client of the cnnlens REST service."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

import httpx
from PIL import Image

from cnnlens.client import _protocol as protocol
from cnnlens.client import results
from cnnlens.client._protocol import ImageInput, TargetInput, auth_headers

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 120.0


class Client:
    """Talks to a cnnlens service over HTTP.

    Args:
        base_url: the service's root, e.g. "http://127.0.0.1:8000".
        api_key: sent as the `X-API-Key` header when given.
        timeout: seconds per request.
        http_client: an httpx.Client to use instead (e.g. starlette's TestClient for an
            in-process app); it is not closed by `close()` unless the Client created it.

    Every method raises `CnnlensAPIError` (status, code, message) on an error answer and
    `CnnlensConnectionError` when no answer comes.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        transport: httpx.BaseTransport | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._http = http_client or httpx.Client(
            base_url=base_url, timeout=timeout, transport=transport
        )
        self._close: Callable[[], object] | None = None if http_client else self._http.close
        self._headers = auth_headers(api_key)

    @classmethod
    def for_app(cls, app: Any, api_key: str | None = None) -> Client:
        """A client of an in-process ASGI app, with its lifespan started (for tests)."""
        from starlette.testclient import TestClient

        test_client = TestClient(app, base_url="http://cnnlens.test")
        test_client.__enter__()  # runs the lifespan: models loaded
        client = cls(api_key=api_key, http_client=cast(httpx.Client, test_client))
        client._close = lambda: test_client.__exit__(None, None, None)
        return client

    def close(self) -> None:
        """Close the connection pool (or stop the in-process app) if this client owns it."""
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self, call: protocol.Call[T]) -> T:
        """Send one request and read its answer (the only I/O of this class)."""
        with protocol.transport_errors():
            response = self._http.request(**call.request(self._headers))
        return call.result(response)

    def explain(
        self,
        image: ImageInput,
        methods: str | Sequence[str] = ("grad_cam",),
        *,
        model: str | None = None,
        target: TargetInput = None,
        layer: str | None = None,
        params: Mapping[str, Mapping[str, Any]] | None = None,
        output: str | Sequence[str] = ("overlay", "heatmap", "array"),
        filename: str | None = None,
    ) -> results.ExplainResult:
        """POST /v1/explain: one map per method and target, each raw map a numpy array
        (`ExplanationResult.map`, (H, W) or (3, H, W) at the image's size), the overlay and
        heatmap PIL images. Leave "array" out of `output` for smaller answers."""
        return self._run(
            protocol.explain(
                image,
                methods,
                model=model,
                target=target,
                layer=layer,
                params=params,
                output=output,
                filename=filename,
            )
        )

    def explain_overlay(
        self,
        image: ImageInput,
        method: str = "grad_cam",
        *,
        model: str | None = None,
        target: int | str | None = None,
        layer: str | None = None,
        params: Mapping[str, Any] | None = None,
        filename: str | None = None,
    ) -> Image.Image:
        """POST /v1/explain with `Accept: image/png`: the overlay itself."""
        return self._run(
            protocol.explain_png(
                image,
                method,
                model=model,
                target=target,
                layer=layer,
                params=params,
                filename=filename,
            )
        )

    def compare(
        self,
        images: ImageInput | list[ImageInput],
        methods: str | Sequence[str] = ("saliency", "grad_cam"),
        *,
        model: str | None = None,
        target: int | str | None = None,
        layer: str | None = None,
        params: Mapping[str, Mapping[str, Any]] | None = None,
        scores: str | Sequence[str] | None = None,
        steps: int | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> results.CompareResult:
        """POST /v1/compare: methods side by side on one image (or a list of them), their
        pairwise agreement and faithfulness scores.

        Args:
            scores: "deletion", "insertion", "randomization" (default: all); [] or "none"
                for the agreement only.
            steps: points per perturbation curve.
            options: further form fields of the route (baseline, top_k, stages, seed, ssim,
                shared_scale, random_baseline).
        """
        return self._run(
            protocol.compare(
                images,
                methods,
                model=model,
                target=target,
                layer=layer,
                params=params,
                scores=scores,
                steps=steps,
                options=options,
            )
        )

    def adversarial(
        self,
        image: ImageInput,
        *,
        model: str | None = None,
        target: TargetInput = None,
        params: Mapping[str, Any] | None = None,
        filename: str | None = None,
    ) -> results.AdversarialResult:
        """POST /v1/adversarial: an FGSM / PGD adversarial version of the image."""
        return self._run(
            protocol.adversarial(
                image,
                model=model,
                target=target,
                params=params,
                filename=filename,
            )
        )

    def activation_max(
        self,
        *,
        model: str | None = None,
        target: TargetInput = None,
        layer: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> results.ActivationMaxResult:
        """POST /v1/activation-max: an image that maximizes a class score (or a channel)."""
        return self._run(
            protocol.activation_max(
                None,
                model=model,
                target=target,
                layer=layer,
                params=params,
            )
        )

    def feature_maps(
        self,
        image: ImageInput,
        *,
        model: str | None = None,
        layer: str | None = None,
        params: Mapping[str, Any] | None = None,
        filename: str | None = None,
    ) -> results.FeatureMapsResult:
        """POST /v1/feature-maps: a layer's activations for the image."""
        return self._run(
            protocol.feature_maps(
                image,
                model=model,
                layer=layer,
                params=params,
                filename=filename,
            )
        )

    def filters(
        self,
        *,
        model: str | None = None,
        layer: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> results.FiltersResult:
        """POST /v1/filters: a layer's filters rendered as images."""
        return self._run(
            protocol.filters(
                None,
                model=model,
                layer=layer,
                params=params,
            )
        )

    def models(self) -> list[results.ModelSummary]:
        """GET /v1/models."""
        return self._run(protocol.models())

    def model(self, name: str) -> results.ModelInfo:
        """GET /v1/models/{name}: layers, default layer, compatibility, class names."""
        return self._run(protocol.model(name))

    def methods(self) -> list[results.MethodInfo]:
        """GET /v1/methods: every method with its params' JSON schema."""
        return self._run(protocol.methods())

    def health(self) -> results.Health:
        """GET /healthz and /readyz (a 503 from /readyz means "not ready", not an error)."""
        alive = self._run(protocol.alive())
        return protocol.health(alive, self._run(protocol.ready()))
