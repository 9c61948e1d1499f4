"""Shared fixtures: the default model and scikit-image photos, loaded once per test run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings
from PIL import Image
from starlette import testclient

from cnnlens.models import LoadedModel, load_model

# The service answers only the loopback Host names when it has no API keys (see
# docs/guides/security.md). Starlette's in-process test client sends "testserver": the tests'
# clients send "localhost" instead, as a browser on the service's machine would.
_defaults = testclient.TestClient.__init__.__defaults__ or ()
testclient.TestClient.__init__.__defaults__ = ("http://localhost", *_defaults[1:])
# schemathesis's in-process client sends "testserver" too: the apps it tests allow that name.
SCHEMATHESIS_HOST = "testserver"

# Hypothesis profiles: "ci" (the default under make test) is derandomized and keeps no example
# database, so a landing never depends on luck; "fuzz" (make fuzz) explores at random, long.
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("fuzz", derandomize=False, max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

EGYPTIAN_CAT = 285
ESPRESSO = 967


@pytest.fixture(scope="session")
def default_model() -> LoadedModel:
    return load_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def chelsea() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea())


@pytest.fixture(scope="session")
def coffee() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.coffee())


@pytest.fixture(scope="session")
def chelsea_batch(default_model: LoadedModel, chelsea: Image.Image) -> torch.Tensor:
    """(1, 3, 224, 224) preprocessed chelsea()."""
    return default_model.preprocessing(chelsea)


@pytest.fixture(scope="session")
def coffee_batch(default_model: LoadedModel, coffee: Image.Image) -> torch.Tensor:
    return default_model.preprocessing(coffee)


def pearson(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Pearson correlation of two maps, flattened."""
    first, second = (
        (v.detach().cpu() if isinstance(v, torch.Tensor) else torch.as_tensor(v)).double().flatten()
        for v in (a, b)
    )
    return float(torch.corrcoef(torch.stack([first, second]))[0, 1])


@pytest.fixture(scope="session")
def chelsea_png(chelsea: Image.Image, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """chelsea() as a PNG file, for uploads and the CLI."""
    path = tmp_path_factory.mktemp("images") / "chelsea.png"
    chelsea.save(path)
    return path


@pytest.fixture(scope="session")
def server_url(default_model: LoadedModel) -> Iterator[str]:
    """Base URL of one uvicorn server running the app on a free loopback port (shared by the
    client, CLI and browser tests)."""
    from tests.client.conftest import make_app
    from tests.client.live_server import live_server

    with live_server(make_app(default_model)) as url:
        yield url


@pytest.fixture(autouse=True, scope="session")
def _deterministic() -> None:
    torch.manual_seed(0)
