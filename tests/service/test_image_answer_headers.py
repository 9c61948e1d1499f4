"""An image answer (Accept: image/png) says in its headers which method and class it shows."""

from __future__ import annotations

from types import SimpleNamespace

from fastapi.testclient import TestClient

from cnnlens.service.deps import image_headers


def test_explain_png_names_its_method_and_target(client: TestClient, small_png: bytes) -> None:
    response = client.post(
        "/v1/explain",
        files={"image": ("cat.png", small_png, "image/png")},
        data={"method": "grad_cam", "target": "281"},
        headers={"Accept": "image/png"},
    )
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-cnnlens-method"] == "grad_cam"
    target = response.headers["x-cnnlens-target"]
    assert target.startswith('281;label="tabby";probability=0.'), target
    # The JSON answer says the same in its body, and has no such headers.
    json_answer = client.post(
        "/v1/explain",
        files={"image": ("cat.png", small_png, "image/png")},
        data={"method": "grad_cam", "target": "281"},
    )
    assert "x-cnnlens-target" not in json_answer.headers
    explained = json_answer.json()["explanations"][0]["target"]
    assert target == f'281;label="tabby";probability={explained["probability"]:.4f}'


def test_compare_png_names_its_methods(client: TestClient, small_png: bytes) -> None:
    response = client.post(
        "/v1/compare",
        files={"image": ("cat.png", small_png, "image/png")},
        data={"method": "grad_cam,saliency", "scores": "none"},
        headers={"Accept": "image/png"},
    )
    assert response.status_code == 200, response.text[:300]
    assert response.headers["x-cnnlens-method"] == "grad_cam,saliency"
    assert response.headers["x-cnnlens-target"].split(";")[0].isdigit()


def test_labels_outside_printable_ascii_are_percent_encoded() -> None:
    target = SimpleNamespace(index=3, label='café "crème"', probability=0.5)
    headers = image_headers(["grad_cam"], target)
    assert headers["X-Cnnlens-Target"] == '3;label="caf%C3%A9 %22cr%C3%A8me%22";probability=0.5000'
    headers["X-Cnnlens-Target"].encode("latin-1")  # a valid header value
