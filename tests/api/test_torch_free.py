"""The v1 contract and the HTTP client load no torch: a client machine needs neither."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "torchvision", "timm", "captum", "ray")


def _loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_api_and_client_import_no_torch() -> None:
    modules = _loaded_after(
        "import cnnlens.api, cnnlens.client\n"
        "import cnnlens.api.bodies, cnnlens.api.codecs, cnnlens.api.forms, cnnlens.api.models\n"
        "from cnnlens.client import AsyncClient, Client, ExplainResult, CompareResult"
    )
    assert "cnnlens.client.sync" in modules and "cnnlens.api.models" in modules
    heavy = [name for name in modules if name.split(".")[0] in HEAVY]
    assert heavy == []


def test_the_probe_sees_torch_when_it_is_imported() -> None:
    """The check above can fail: the same probe finds torch once the library is imported."""
    assert "torch" in _loaded_after("import cnnlens.explain")
