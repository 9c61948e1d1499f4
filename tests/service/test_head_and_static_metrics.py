"""HEAD on / and /healthz (load balancers probe with it); static files labelled by mount."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_head_on_the_page_and_healthz_answers_200_without_body(client: TestClient) -> None:
    for path in ("/", "/healthz"):
        response = client.head(path)
        assert response.status_code == 200, path
        assert response.content == b""
    assert client.get("/healthz").json()["status"] == "ok"


def test_metrics_label_static_files_by_their_mount(client: TestClient) -> None:
    assert client.get("/web/app.js").status_code == 200
    assert client.get("/static/docs/swagger-ui.css").status_code == 200
    assert client.get("/web/no-such-file.js").status_code == 404
    assert client.get("/no/such/route").status_code == 404
    text = client.get("/metrics").text
    assert 'route="/web/{path}",status="200"' in text
    assert 'route="/web/{path}",status="404"' in text
    assert 'route="/static/docs/{path}",status="200"' in text
    assert 'route="unmatched",status="404"' in text  # a path no route or mount matches
