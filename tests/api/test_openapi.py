"""The OpenAPI document covers every /v1 route, is valid OpenAPI 3.1, and /docs renders it."""

from __future__ import annotations

from openapi_spec_validator import validate
from starlette.testclient import TestClient

from gateway.api.openapi import api_routes, described


def test_every_v1_route_is_documented(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    routes = api_routes(client.app.routes)  # type: ignore[attr-defined]
    assert routes
    undocumented = [f"{m} {r.path}" for m, r in routes if described(r.endpoint) is None]
    assert undocumented == [], "add @operation(...) to these endpoints"
    for method, route in routes:
        operation = document["paths"][route.path_format][method.lower()]
        assert operation["summary"] and operation["tags"], (method, route.path)
        assert "401" in operation["responses"]
    operation_ids = [
        op["operationId"] for item in document["paths"].values() for op in item.values()
    ]
    assert len(operation_ids) == len(set(operation_ids))


def test_document_is_valid_openapi_31(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_document_uses_the_request_models(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    rep_create = schemas["RepCreate"]
    assert set(rep_create["required"]) == {"name", "phone"}
    assert rep_create["additionalProperties"] is False  # unknown fields are refused
    put = document["paths"]["/v1/playbooks/{playbook_id}"]["put"]
    assert set(put["requestBody"]["content"]) >= {"application/json", "application/yaml"}
    assert put["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ErrorBody"
    )
    leads = document["paths"]["/v1/leads"]["get"]
    assert {p["name"] for p in leads["parameters"]} == {"phone", "origin", "key", "cursor", "limit"}
    assert document["components"]["securitySchemes"]["ApiKey"]["name"] == "Authorization"


def test_docs_page_is_self_contained(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "/v1/sources/{rule_id}/clone" in page and "RepCreate" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page
