"""Publishing, reading, listing and validating playbooks through the API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.support.tenants import Tenant

from .conftest import PLAYBOOK_YAML, YAML, publish

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_publish_yaml_then_versions(client: TestClient, tenant_a: Tenant) -> None:
    first = publish(client, tenant_a)
    assert first["version"] == 1 and first["latest_version"] == 1
    assert first["name"] == "Hello" and first["format"] == "yaml"
    assert first["document"] == PLAYBOOK_YAML
    labels = first["activity_labels"]
    assert isinstance(labels, dict)
    assert labels["qualified"] == "outcome" and labels["started"] == "event"
    assert first["warnings"] == []

    changed = PLAYBOOK_YAML.replace("name: Hello", "name: Hello again")
    second = client.put(
        "/v1/playbooks/hello", content=changed, headers={**tenant_a.headers, **YAML}
    ).json()
    assert second["version"] == 2 and second["name"] == "Hello again"

    old = client.get("/v1/playbooks/hello?version=1", headers=tenant_a.headers).json()
    assert old["document"] == PLAYBOOK_YAML and old["latest_version"] == 2
    latest = client.get("/v1/playbooks/hello", headers=tenant_a.headers).json()
    assert latest["version"] == 2 and latest["document"] == changed
    missing = client.get("/v1/playbooks/hello?version=3", headers=tenant_a.headers)
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "version"

    listed = client.get("/v1/playbooks", headers=tenant_a.headers).json()["data"]
    assert [(p["id"], p["name"], p["latest_version"]) for p in listed] == [
        ("hello", "Hello again", 2)
    ]
    assert listed[0]["activity_labels"]["qualified"] == "outcome"


def test_publish_json_forms(client: TestClient, tenant_a: Tenant) -> None:
    as_object = {
        "name": "J",
        "steps": [{"id": "s", "kind": "send", "text": "Hello {lead.first_name|there}"}],
    }
    direct = client.put("/v1/playbooks/j", json=as_object, headers=tenant_a.headers)
    assert direct.status_code == 201, direct.text
    assert direct.json()["format"] == "json"
    assert json.loads(direct.json()["document"]) == as_object

    wrapped = client.put(
        "/v1/playbooks/j",
        json={"document": PLAYBOOK_YAML, "format": "yaml"},
        headers=tenant_a.headers,
    )
    assert wrapped.status_code == 201 and wrapped.json()["version"] == 2
    assert wrapped.json()["document"] == PLAYBOOK_YAML

    embedded = client.put("/v1/playbooks/j", json={"document": as_object}, headers=tenant_a.headers)
    assert embedded.status_code == 201 and embedded.json()["format"] == "json"


def test_warnings_come_back(client: TestClient, tenant_a: Tenant) -> None:
    text = "name: W\nsteps:\n  - id: a\n    kind: send\n    text: Hi {lead.first_name}\n"
    body = client.put("/v1/playbooks/w", content=text, headers={**tenant_a.headers, **YAML}).json()
    assert body["version"] == 1
    assert [w["field"] for w in body["warnings"]] == ["steps[0].text"]


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ("name: X\nsteps: []\n", "steps"),
        ("name: X\nsteps:\n  - id: a\n    kind: sned\n", "steps[0].kind"),
        ("name: [unclosed\n", None),
        ("- just a list\n", None),
        ("name: X\nsurprise: 1\nsteps:\n  - id: a\n    kind: wait\n    duration: 1h\n", "surprise"),
    ],
)
def test_invalid_documents_are_422_with_issues(
    client: TestClient, tenant_a: Tenant, document: str, field: str | None
) -> None:
    response = client.put(
        "/v1/playbooks/bad", content=document, headers={**tenant_a.headers, **YAML}
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_playbook"
    assert error.get("field") == field
    assert error["issues"] and all({"field", "code", "message"} <= set(i) for i in error["issues"])
    assert client.get("/v1/playbooks/bad", headers=tenant_a.headers).status_code == 404


def test_goto_to_an_unpublished_playbook_is_a_warning(client: TestClient, tenant_a: Tenant) -> None:
    # Playbooks that name each other can be published in any order.
    drip = (EXAMPLES / "insurance-quote-drip.yaml").read_text()
    first = client.put("/v1/playbooks/drip", content=drip, headers={**tenant_a.headers, **YAML})
    assert first.status_code == 201, first.text
    warnings = [w for w in first.json()["warnings"] if w["field"].startswith("steps")]
    assert [(w["field"], w["code"]) for w in warnings] == [
        ("steps[3].playbook", "unknown_playbook")
    ]

    xdate = (EXAMPLES / "insurance-xdate.yaml").read_text()
    assert (
        client.put(
            "/v1/playbooks/insurance-xdate", content=xdate, headers={**tenant_a.headers, **YAML}
        ).status_code
        == 201
    )
    accepted = client.put("/v1/playbooks/drip", content=drip, headers={**tenant_a.headers, **YAML})
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["transitions"] == ["insurance-xdate"]
    assert [w for w in accepted.json()["warnings"] if w["field"].startswith("steps")] == []
    # Going to itself needs nothing else.
    own = drip.replace("playbook: insurance-xdate", "playbook: self-loop")
    assert (
        client.put(
            "/v1/playbooks/self-loop", content=own, headers={**tenant_a.headers, **YAML}
        ).status_code
        == 201
    )


@pytest.mark.parametrize(
    ("path", "headers", "body", "status", "field"),
    [
        ("/v1/playbooks/Bad_ID", YAML, PLAYBOOK_YAML, 422, "playbook_id"),
        ("/v1/playbooks/ok", {"Content-Type": "text/plain"}, PLAYBOOK_YAML, 415, None),
        ("/v1/playbooks/ok", {"Content-Type": "application/json"}, "{nope", 400, None),
        ("/v1/playbooks/ok", {"Content-Type": "application/json"}, "[1]", 400, None),
        (
            "/v1/playbooks/ok",
            {"Content-Type": "application/json"},
            '{"document": "x", "format": "xml"}',
            422,
            "format",
        ),
        (
            "/v1/playbooks/ok",
            {"Content-Type": "application/json"},
            '{"document": "x", "extra": 1}',
            422,
            "extra",
        ),
    ],
)
def test_unreadable_publish_requests(
    client: TestClient,
    tenant_a: Tenant,
    *,
    path: str,
    headers: dict[str, str],
    body: str,
    status: int,
    field: str | None,
) -> None:
    response = client.put(path, content=body, headers={**tenant_a.headers, **headers})
    assert response.status_code == status, response.text
    assert response.json()["error"].get("field") == field
    assert client.get("/v1/playbooks", headers=tenant_a.headers).json()["data"] == []


def test_validate_without_publishing(client: TestClient, tenant_a: Tenant) -> None:
    ok = client.post(
        "/v1/playbooks/validate", content=PLAYBOOK_YAML, headers={**tenant_a.headers, **YAML}
    )
    assert ok.status_code == 200
    assert ok.json() == {"valid": True, "errors": [], "warnings": []}
    bad = client.post(
        "/v1/playbooks/validate",
        json={"document": "name: X\nsteps:\n  - id: a\n    kind: goto\n    playbook: nowhere\n"},
        headers=tenant_a.headers,
    ).json()
    assert bad["valid"] is True and bad["errors"] == []
    assert "unknown_playbook" in [w["code"] for w in bad["warnings"]]
    as_self = client.post(
        "/v1/playbooks/validate?playbook_id=nowhere",
        json={"document": "name: X\nsteps:\n  - id: a\n    kind: goto\n    playbook: nowhere\n"},
        headers=tenant_a.headers,
    ).json()
    assert as_self["valid"] is True
    assert "unknown_playbook" not in [w["code"] for w in as_self["warnings"]]
    assert client.get("/v1/playbooks", headers=tenant_a.headers).json()["data"] == []


def test_examples_publish(client: TestClient, tenant_a: Tenant) -> None:
    for name in ("insurance-xdate", "mortgage-qualification", "insurance-quote-drip"):
        text = (EXAMPLES / f"{name}.yaml").read_text()
        response = client.put(
            f"/v1/playbooks/{name}", content=text, headers={**tenant_a.headers, **YAML}
        )
        assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (
            YAML,
            "name: X\nsettings: {x: .nan}\nsteps:\n  - id: a\n    kind: wait\n    duration: 1h\n",
        ),
        (YAML, "[" * 100_000),
        ({"Content-Type": "application/json"}, '{"a":' * 100_000),
        ({"Content-Type": "application/json"}, '{"document": "' + "[" * 100_000 + '"}'),
    ],
)
def test_hostile_documents_are_4xx(
    client: TestClient, tenant_a: Tenant, headers: dict[str, str], body: str
) -> None:
    response = client.put("/v1/playbooks/x", content=body, headers={**tenant_a.headers, **headers})
    assert 400 <= response.status_code < 500, response.text
    assert client.get("/v1/playbooks", headers=tenant_a.headers).json()["data"] == []


def test_one_422_lists_structural_and_semantic_errors(client: TestClient, tenant_a: Tenant) -> None:
    document = (
        "name: X\nsteps:\n  - id: a\n    kind: ask\n    text: Hi {settings.agnt}\n    choices:\n"
        "      - keywords: [yes]\n        goto: nowhere\n        colour: red\n"
        "  - id: b\n    kind: sned\n    text: hi\n"
    )
    response = client.put("/v1/playbooks/x", content=document, headers={**tenant_a.headers, **YAML})
    assert response.status_code == 422
    issues = {(i["field"], i["code"]) for i in response.json()["error"]["issues"]}
    assert issues == {
        ("steps[0].choices[0].colour", "unknown_field"),
        ("steps[1].kind", "bad_kind"),
        ("steps[0].choices[0].goto", "unknown_step"),
        ("steps[0].text", "unknown_variable"),
    }
