"""AsyncClient against the app behind a real uvicorn server on a loopback port."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from PIL import Image

from cnnlens.client import AsyncClient, CnnlensAPIError
from cnnlens.models import LoadedModel
from tests.client.conftest import make_app
from tests.conftest import EGYPTIAN_CAT, ESPRESSO


def test_concurrent_explains_over_http(
    server_url: str, chelsea: Image.Image, coffee: Image.Image
) -> None:
    async def both() -> tuple:
        async with AsyncClient(server_url) as client:
            return await asyncio.gather(
                client.explain(chelsea, "grad_cam"), client.explain(coffee, "grad_cam")
            )

    cat, espresso = asyncio.run(both())
    assert cat.predictions[0].index == EGYPTIAN_CAT
    assert espresso.predictions[0].index == ESPRESSO
    for result, picture in ((cat, chelsea), (espresso, coffee)):
        (item,) = result.explanations
        assert item.map is not None and item.map.shape == (picture.height, picture.width)
        assert item.overlay is not None and item.overlay.size == picture.size
        assert float(item.map.max()) > 0


def test_async_errors_and_catalog(server_url: str, chelsea: Image.Image) -> None:
    async def scenario() -> tuple:
        async with AsyncClient(server_url) as client:
            models = await client.models()
            info = await client.model("efficientnet_lite0")
            try:
                await client.explain(chelsea, "grad_cam", layer="not_a_layer")
            except CnnlensAPIError as error:
                return models, info, error
        raise AssertionError("an unknown layer must raise")

    models, info, error = asyncio.run(scenario())
    assert [m.name for m in models] == ["efficientnet_lite0"]
    assert info.default_layer == "bn2" and info.categories[EGYPTIAN_CAT] == "Egyptian cat"
    assert (error.status, error.code) == (422, "unknown_layer")
    assert "not_a_layer" in error.message


def test_async_feature_maps_match_the_sync_shape(server_url: str, chelsea: Image.Image) -> None:
    async def run() -> object:
        async with AsyncClient(server_url) as client:
            return await client.feature_maps(chelsea, layer="conv_stem")

    result = asyncio.run(run())
    assert result.layer == "conv_stem" and result.shape == [32, 112, 112]  # type: ignore[attr-defined]
    means = np.array([c.mean for c in result.top_channels])  # type: ignore[attr-defined]
    assert (np.diff(means) <= 0).all()


@pytest.mark.parametrize("api_key", [None, "key"])
def test_async_client_sends_the_api_key_header(api_key: str | None) -> None:
    import httpx

    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-api-key"))
        return httpx.Response(503, json={"error": {"code": "not_ready", "message": "loading"}},
                              headers={"Retry-After": "3"})  # fmt: skip

    async def run() -> CnnlensAPIError:
        transport = httpx.MockTransport(handler)
        async with AsyncClient("http://localhost", api_key=api_key, transport=transport) as c:
            try:
                await c.models()
            except CnnlensAPIError as error:
                return error
        raise AssertionError("a 503 must raise")

    error = asyncio.run(run())
    assert seen == [api_key]
    assert (error.status, error.code, error.retry_after) == (503, "not_ready", 3.0)


def test_async_client_in_process_over_the_asgi_transport(
    default_model: LoadedModel, chelsea: Image.Image
) -> None:
    """httpx's ASGI transport straight into create_app's app, its lifespan started here."""
    import httpx

    app = make_app(default_model)

    async def scenario() -> tuple:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with AsyncClient("http://localhost", transport=transport) as client:
                for _ in range(600):
                    if (await client.health()).ready:
                        break
                    await asyncio.sleep(0.02)
                result = await client.explain(chelsea, ["grad_cam", "guided_backprop"])
                try:
                    await client.explain(chelsea, "grad_cam", target="not a class")
                except CnnlensAPIError as error:
                    return result, error
        raise AssertionError("an unknown class must raise")

    result, error = asyncio.run(scenario())
    assert result.predictions[0].index == EGYPTIAN_CAT
    guided = result.by_method("guided_backprop")[0].map
    assert guided is not None and guided.shape == (3, 300, 451)  # one map per colour channel
    assert (error.status, error.code) == (422, "bad_target")
