"""Cloning and deleting playbooks through the API (`POST /v1/playbooks/{id}/clone`,
`DELETE /v1/playbooks/{id}`): account-scoped, validated like a publish, and a delete that keeps
the versions running plays need."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.support.tenants import Tenant

from .conftest import PLAYBOOK_YAML, YAML, add_rep, publish


def test_clone_copies_the_latest_document_as_a_new_playbook(
    client: TestClient, tenant_a: Tenant
) -> None:
    publish(client, tenant_a)
    changed = PLAYBOOK_YAML.replace("name: Hello", "name: Hello again")
    client.put("/v1/playbooks/hello", content=changed, headers={**tenant_a.headers, **YAML})

    cloned = client.post(
        "/v1/playbooks/hello/clone", headers=tenant_a.headers, json={"playbook_id": "hello-2"}
    )
    assert cloned.status_code == 201, cloned.text
    body = cloned.json()
    assert (body["id"], body["version"], body["name"]) == ("hello-2", 1, "Hello again")
    assert body["document"] == changed and body["format"] == "yaml"
    assert body["warnings"] == []

    older = client.post(
        "/v1/playbooks/hello/clone",
        headers=tenant_a.headers,
        json={"playbook_id": "hello-v1", "version": 1},
    )
    assert older.status_code == 201 and older.json()["document"] == PLAYBOOK_YAML
    listed = client.get("/v1/playbooks", headers=tenant_a.headers).json()["data"]
    assert [p["id"] for p in listed] == ["hello", "hello-2", "hello-v1"]
    # The original is untouched.
    assert client.get("/v1/playbooks/hello", headers=tenant_a.headers).json()["version"] == 2


def test_clone_refuses_a_taken_id_a_bad_id_and_another_accounts_playbook(
    client: TestClient, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    publish(client, tenant_a)
    publish(client, tenant_a, "other")
    taken = client.post(
        "/v1/playbooks/hello/clone", headers=tenant_a.headers, json={"playbook_id": "other"}
    )
    assert taken.status_code == 409
    assert taken.json()["error"]["existing_id"] == "other"
    assert client.get("/v1/playbooks/other", headers=tenant_a.headers).json()["version"] == 1

    bad = client.post(
        "/v1/playbooks/hello/clone", headers=tenant_a.headers, json={"playbook_id": "no spaces"}
    )
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "playbook_id"
    missing_version = client.post(
        "/v1/playbooks/hello/clone",
        headers=tenant_a.headers,
        json={"playbook_id": "copy", "version": 9},
    )
    assert missing_version.status_code == 404
    assert missing_version.json()["error"]["field"] == "version"

    # Account B sees no playbook `hello`, and its clone doesn't land in A.
    foreign = client.post(
        "/v1/playbooks/hello/clone", headers=tenant_b.headers, json={"playbook_id": "mine"}
    )
    assert foreign.status_code == 404
    listed = client.get("/v1/playbooks", headers=tenant_a.headers).json()["data"]
    assert [p["id"] for p in listed] == ["hello", "other"]
    assert client.get("/v1/playbooks", headers=tenant_b.headers).json()["data"] == []


def test_delete_hides_the_playbook_and_keeps_its_versions_numbered(
    client: TestClient, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    publish(client, tenant_a)
    publish(client, tenant_a)  # version 2
    publish(client, tenant_b)
    running = client.post(
        "/v1/plays",
        headers=tenant_a.headers,
        json={"playbook_id": "hello", "lead": {"phone": "+14155550199"}},
    )
    assert running.status_code == 201, running.text

    assert client.delete("/v1/playbooks/hello", headers=tenant_b.headers).status_code == 204
    # B's delete removed B's playbook only.
    assert client.get("/v1/playbooks/hello", headers=tenant_a.headers).json()["version"] == 2

    assert client.delete("/v1/playbooks/hello", headers=tenant_a.headers).status_code == 204
    assert client.get("/v1/playbooks/hello", headers=tenant_a.headers).status_code == 404
    assert client.get("/v1/playbooks", headers=tenant_a.headers).json()["data"] == []
    assert client.delete("/v1/playbooks/hello", headers=tenant_a.headers).status_code == 404
    # No new play starts on it.
    started = client.post(
        "/v1/plays",
        headers=tenant_a.headers,
        json={"playbook_id": "hello", "lead": {"phone": "+14155550123"}},
    )
    assert started.status_code == 404, started.text
    # The play already running keeps its version, and the API still shows it whole.
    play = client.get(f"/v1/plays/{running.json()['id']}", headers=tenant_a.headers)
    assert play.status_code == 200, play.text
    assert (play.json()["playbook_version"], play.json()["state"]) == (2, "running")

    # Published again, it continues after the kept versions, which plays may still name.
    again = publish(client, tenant_a)
    assert again["version"] == 3 and again["latest_version"] == 3
    assert client.get("/v1/playbooks/hello", headers=tenant_a.headers).json()["version"] == 3


def test_delete_is_refused_while_a_source_rule_starts_the_playbook(
    client: TestClient, tenant_a: Tenant
) -> None:
    publish(client, tenant_a)
    rep = add_rep(client, tenant_a, "Sam", "+14155550100")
    rule = client.post(
        "/v1/sources",
        headers=tenant_a.headers,
        json={"origin": "EverQuote", "playbook_id": "hello", "rep_ids": [rep]},
    ).json()
    refused = client.delete("/v1/playbooks/hello", headers=tenant_a.headers)
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["existing_id"] == rule["id"] and "EverQuote" in error["message"]
    assert client.get("/v1/playbooks/hello", headers=tenant_a.headers).status_code == 200

    client.delete(f"/v1/sources/{rule['id']}", headers=tenant_a.headers)
    assert client.delete("/v1/playbooks/hello", headers=tenant_a.headers).status_code == 204
