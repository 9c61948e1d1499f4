"""AsyncClient: the asyncio Python client of the cnnlens REST service."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import httpx
from PIL import Image

from cnnlens.client import _protocol as protocol
from cnnlens.client import results
from cnnlens.client._protocol import ImageInput, TargetInput, auth_headers
from cnnlens.client.sync import DEFAULT_TIMEOUT, DEFAULT_URL

T = TypeVar("T")


class AsyncClient:
    """The asyncio twin of `Client`: the same methods, awaited.

    Args:
        base_url: the service's root, e.g. "http://127.0.0.1:8000".
        api_key: sent as the `X-API-Key` header when given.
        timeout: seconds per request.
        transport: an httpx transport, e.g. `httpx.ASGITransport(app)` for an in-process app
            (start the app's lifespan yourself, or use `Client.for_app`).
        http_client: an httpx.AsyncClient to use instead; not closed by `aclose()`.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._http = http_client or httpx.AsyncClient(
            base_url=base_url, timeout=timeout, transport=transport
        )
        self._owns_client = http_client is None
        self._headers = auth_headers(api_key)

    async def aclose(self) -> None:
        """Close the connection pool if this client owns it."""
        if self._owns_client:
            await self._http.aclose()
            self._owns_client = False

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _run(self, call: protocol.Call[T]) -> T:
        """Send one request and read its answer (the only I/O of this class)."""
        with protocol.transport_errors():
            response = await self._http.request(**call.request(self._headers))
        return call.result(response)

    async def explain(
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
        return await self._run(
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

    async def explain_overlay(
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
        return await self._run(
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

    async def compare(
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
        return await self._run(
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

    async def adversarial(
        self,
        image: ImageInput,
        *,
        model: str | None = None,
        target: TargetInput = None,
        params: Mapping[str, Any] | None = None,
        filename: str | None = None,
    ) -> results.AdversarialResult:
        """POST /v1/adversarial: an FGSM / PGD adversarial version of the image."""
        return await self._run(
            protocol.adversarial(
                image,
                model=model,
                target=target,
                params=params,
                filename=filename,
            )
        )

    async def activation_max(
        self,
        *,
        model: str | None = None,
        target: TargetInput = None,
        layer: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> results.ActivationMaxResult:
        """POST /v1/activation-max: an image that maximizes a class score (or a channel)."""
        return await self._run(
            protocol.activation_max(
                None,
                model=model,
                target=target,
                layer=layer,
                params=params,
            )
        )

    async def feature_maps(
        self,
        image: ImageInput,
        *,
        model: str | None = None,
        layer: str | None = None,
        params: Mapping[str, Any] | None = None,
        filename: str | None = None,
    ) -> results.FeatureMapsResult:
        """POST /v1/feature-maps: a layer's activations for the image."""
        return await self._run(
            protocol.feature_maps(
                image,
                model=model,
                layer=layer,
                params=params,
                filename=filename,
            )
        )

    async def filters(
        self,
        *,
        model: str | None = None,
        layer: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> results.FiltersResult:
        """POST /v1/filters: a layer's filters rendered as images."""
        return await self._run(
            protocol.filters(
                None,
                model=model,
                layer=layer,
                params=params,
            )
        )

    async def models(self) -> list[results.ModelSummary]:
        """GET /v1/models."""
        return await self._run(protocol.models())

    async def model(self, name: str) -> results.ModelInfo:
        """GET /v1/models/{name}: layers, default layer, compatibility, class names."""
        return await self._run(protocol.model(name))

    async def methods(self) -> list[results.MethodInfo]:
        """GET /v1/methods: every method with its params' JSON schema."""
        return await self._run(protocol.methods())

    async def health(self) -> results.Health:
        """GET /healthz and /readyz (a 503 from /readyz means "not ready", not an error)."""
        alive = await self._run(protocol.alive())
        return protocol.health(alive, await self._run(protocol.ready()))
