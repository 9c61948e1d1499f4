"""The OpenAPI schema describes what each route really sends: a model for every JSON answer."""

from __future__ import annotations

from typing import Any

from cnnlens.service.app import create_app
from cnnlens.service.settings import Settings


def _success_contents() -> dict[str, dict[str, Any]]:
    """'VERB path status' -> media type -> schema, for every 2xx answer of the v1 API."""
    spec = create_app(Settings.model_validate({})).openapi()  # no lifespan: nothing loads
    return {
        f"{verb.upper()} {path} {status}": {
            media: body.get("schema") for media, body in answer.get("content", {}).items()
        }
        for path, operations in spec["paths"].items()
        for verb, operation in operations.items()
        for status, answer in operation["responses"].items()
        if status.startswith("2")
    }


def test_every_json_answer_has_a_model() -> None:
    contents = _success_contents()
    assert len(contents) >= 15
    empty = [
        f"{route} {media}"
        for route, media_types in contents.items()
        for media, schema in media_types.items()
        if not schema  # {} or None: an answer the schema says nothing about
    ]
    assert empty == []
    json_refs = {
        route: media_types["application/json"].get("$ref", "")
        for route, media_types in contents.items()
        if "application/json" in media_types
    }
    assert json_refs["POST /v1/explain 200"] == "#/components/schemas/ExplainResponse"
    assert json_refs["GET /v1/audits/{job_id}/results 200"].endswith("/AuditResults")
    assert all(ref.startswith("#/components/schemas/") for ref in json_refs.values()), json_refs


def test_non_json_answers_declare_their_media_type() -> None:
    contents = _success_contents()
    assert set(contents["GET /v1/audits/{job_id}/report 200"]) == {"text/html"}
    assert set(contents["GET /v1/audits/{job_id}/overlays/{index}/{method}.png 200"]) == {
        "image/png"
    }
    assert set(contents["GET /metrics 200"]) == {"text/plain"}


def test_error_answers_are_documented_as_json_error_bodies() -> None:
    spec = create_app(Settings.model_validate({})).openapi()
    report = spec["paths"]["/v1/audits/{job_id}/report"]["get"]["responses"]
    overlay = spec["paths"]["/v1/audits/{job_id}/overlays/{index}/{method}.png"]["get"]
    for responses in (report, overlay["responses"]):
        schema = responses["404"]["content"]["application/json"]["schema"]
        assert set(responses["404"]["content"]) == {"application/json"}
        assert schema == {"$ref": "#/components/schemas/ErrorBody"}
