"""The OpenAPI document covers every /v1 route, is valid OpenAPI 3.1, has an example for every
request body; /docs serves the vendored renderer for it and / leads to the console and docs."""

from __future__ import annotations

import re
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from starlette.testclient import TestClient

from gateway.api.openapi import api_routes, described
from tests.support.tenants import Tenant


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


def _body_examples(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(operation, media type, media object) for every request body in the document."""
    found = []
    for path, item in document["paths"].items():
        for method, op in item.items():
            for media, content in op.get("requestBody", {}).get("content", {}).items():
                found.append((f"{method.upper()} {path}", media, content))
    return found


def test_every_request_body_has_an_example_its_schema_and_model_accept(
    client: TestClient,
) -> None:
    document = client.get("/openapi.json").json()
    bodies = _body_examples(document)
    assert len(bodies) >= 20
    missing = [f"{name} ({media})" for name, media, content in bodies if "example" not in content]
    assert missing == [], "give these operations an example= (or text_example=)"
    for name, media, content in bodies:
        # The schema's refs point into the document's components: validate with them in reach.
        schema = {**content["schema"], "components": document["components"]}
        errors = [e.message for e in Draft202012Validator(schema).iter_errors(content["example"])]
        assert errors == [], (name, media, errors)
        if media != "application/json":
            assert isinstance(yaml.safe_load(content["example"]), dict), (name, media)
    # The schema can't express every rule (one of lead_id/phone, rep lists by distribution):
    # the model that validates the request must take the example too.
    for _method, route in api_routes(client.app.routes):  # type: ignore[attr-defined]
        op = described(route.endpoint)
        if op is not None and op.request is not None:
            op.request.model_validate(op.example)


def test_playbook_examples_are_valid_playbooks(client: TestClient, tenant_a: Tenant) -> None:
    document = client.get("/openapi.json").json()
    body = document["paths"]["/v1/playbooks/validate"]["post"]["requestBody"]["content"]
    for media in ("application/yaml", "application/json"):
        example = body[media]["example"]
        response = client.post(
            "/v1/playbooks/validate",
            **({"json": example} if media == "application/json" else {"content": example}),
            headers={**tenant_a.headers, "Content-Type": media},
        )
        assert response.status_code == 200, response.text
        assert response.json()["valid"] is True, (media, response.json())


def test_docs_page_loads_the_vendored_renderer_under_a_strict_policy(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self';" in policy
    page = response.text
    assert "http://" not in page and "https://" not in page  # nothing from another host
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    assert scripts and all(body == "" for _, body in scripts)  # no inline script
    sources = [re.search(r'src="([^"]+)"', attrs) for attrs, _ in scripts]
    for found in sources:
        assert found is not None and found.group(1).startswith("/docs/static/")
        served = client.get(found.group(1))
        assert served.status_code == 200 and "javascript" in served.headers["content-type"]
    assert "/openapi.json" in client.get("/docs/static/docs.js").text


def test_home_page_leads_to_the_console_and_the_docs(client: TestClient) -> None:
    page = client.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'href="/console/"' in page.text and 'href="/docs"' in page.text
    assert "README" in page.text and "<script" not in page.text
    as_json = client.get("/", headers={"Accept": "application/json"})
    assert as_json.status_code == 200
    assert as_json.json() == {"console": "/console/", "docs": "/docs", "openapi": "/openapi.json"}
