"""The playbook API under hostile documents: limits answer 4xx naming the limit, non-JSON YAML
types answer 422 naming the path, unrunnable patterns are refused where they are, and parsing
runs off the event loop."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient

from gateway.api import playbooks as playbooks_api
from gateway.app import create_app
from gateway.playbooks.limits import MAX_DOCUMENT_BYTES, MAX_SETTINGS
from gateway.settings import Settings
from tests.support.servers import serve
from tests.support.tenants import Tenant

from .conftest import PLAYBOOK_YAML, YAML

ASK = """\
name: P
activities:
  outcomes: [qualified]
steps:
  - id: interested
    kind: ask
    text: "Still interested?"
    choices:
      - keywords: [yes]
        outcome: qualified
      - patterns: ["{pattern}"]
        outcome: qualified
"""


def put(client: TestClient, tenant: Tenant, text: str, playbook_id: str = "p") -> httpx.Response:
    response: httpx.Response = client.put(
        f"/v1/playbooks/{playbook_id}", content=text.encode(), headers={**tenant.headers, **YAML}
    )
    return response


def test_the_80000_settings_document_is_413_and_nothing_is_stored(
    client: TestClient, tenant_a: Tenant
) -> None:
    text = "name: x\nsettings:\n" + "".join(f"  k{i:05d}: v\n" for i in range(80_000))
    for response in (
        put(client, tenant_a, text),
        client.post("/v1/playbooks/validate", content=text, headers={**tenant_a.headers, **YAML}),
    ):
        assert response.status_code == 413, response.text
        error = response.json()["error"]
        assert error["code"] == "too_large" and error["field"] == "document"
        assert "MAX_DOCUMENT_BYTES" in error["message"]
        assert str(MAX_DOCUMENT_BYTES) in error["message"]
    enveloped = client.put(
        "/v1/playbooks/p",
        json={"document": text[: MAX_DOCUMENT_BYTES + 10]},
        headers=tenant_a.headers,
    )
    assert enveloped.status_code == 413
    assert client.get("/v1/playbooks/p", headers=tenant_a.headers).status_code == 404


def test_too_many_settings_is_422_naming_the_limit(client: TestClient, tenant_a: Tenant) -> None:
    settings = "".join(f"  k{i}: v\n" for i in range(MAX_SETTINGS + 1))
    response = put(
        client, tenant_a, PLAYBOOK_YAML.replace("activities:", f"settings:\n{settings}activities:")
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "settings"
    assert [(i["field"], i["code"]) for i in error["issues"]] == [("settings", "too_many")]
    assert "MAX_SETTINGS" in error["message"]


def test_billion_laughs_is_422(client: TestClient, tenant_a: Tenant) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, 10):
        lines.append(f"{chr(97 + n)}: &{chr(97 + n)} [{', '.join([f'*{chr(96 + n)}'] * 9)}]")
    response = put(client, tenant_a, "\n".join(lines) + "\n")
    assert response.status_code == 422
    assert "aliases" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("!!binary aGVsbG8=", "!!binary"),
        ("!!set {a, b}", "!!set"),
        ("!!timestamp 2024-05-01", "!!timestamp"),
        ("!!omap [a: 1]", "!!omap"),
        ("!!python/tuple [1, 2]", "!!python/tuple"),
        (".nan", "not a JSON number"),
    ],
)
def test_non_json_yaml_types_are_422_naming_the_path(
    client: TestClient, tenant_a: Tenant, value: str, shown: str
) -> None:
    text = PLAYBOOK_YAML.replace("activities:", f"settings:\n  agent: {value}\nactivities:")
    for response in (
        put(client, tenant_a, text),
        client.post("/v1/playbooks/validate", content=text, headers={**tenant_a.headers, **YAML}),
    ):
        assert response.status_code in (422, 200), response.text
        body = response.json()
        found = body["error"]["issues"] if response.status_code == 422 else body["errors"]
        assert [(i["field"], i["code"]) for i in found] == [("settings.agent", "unsupported_type")]
        assert shown in found[0]["message"]
    assert client.get("/v1/playbooks/p", headers=tenant_a.headers).status_code == 404


@pytest.mark.parametrize("pattern", ["^(a|a)*$", "(a+)+$"])
def test_backtracking_patterns_publish_without_warning(
    client: TestClient, tenant_a: Tenant, pattern: str
) -> None:
    response = put(client, tenant_a, ASK.replace("{pattern}", pattern))
    assert response.status_code == 201, response.text
    assert response.json()["warnings"] == []


def test_a_backreference_is_refused_naming_the_step_and_choice(
    client: TestClient, tenant_a: Tenant
) -> None:
    response = put(client, tenant_a, ASK.replace("{pattern}", r"(a)\\1"))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "steps[0].choices[1].patterns[0]"
    assert error["issues"][0]["code"] == "bad_pattern"
    assert "step 'interested', choice 2" in error["message"] and "RE2" in error["message"]


async def test_publish_parses_off_the_event_loop_while_healthz_answers(
    settings: Settings,
    engine: AsyncEngine,
    tenant_a: Tenant,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = playbooks_api._validate
    loop_thread = threading.get_ident()
    entered = threading.Event()
    healthz_answered = threading.Event()
    seen: dict[str, Any] = {}

    def held_validate(text: str, format: Any) -> Any:
        # Stands in for a slow parse: holds until /healthz has been answered meanwhile. Were it
        # run on the event loop, /healthz could not be served and the wait would run out.
        seen["thread"] = threading.get_ident()
        entered.set()
        seen["healthz_answered_meanwhile"] = healthz_answered.wait(timeout=20)
        return real(text, format)

    monkeypatch.setattr(playbooks_api, "_validate", held_validate)
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as http,
    ):
        publishing = asyncio.create_task(
            http.put("/v1/playbooks/p", content=PLAYBOOK_YAML, headers={**tenant_a.headers, **YAML})
        )
        assert await asyncio.to_thread(entered.wait, 30)
        health = await http.get("/healthz")
        healthz_answered.set()
        published = await publishing
    assert health.status_code == 200, health.text
    assert published.status_code == 201, published.text
    assert seen["thread"] != loop_thread
    assert seen["healthz_answered_meanwhile"] is True
    assert json.loads(published.text)["version"] == 1
