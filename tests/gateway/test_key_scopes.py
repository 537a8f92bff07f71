"""API key scopes, walked over every route: `full` may call everything, `read` only GET/HEAD,
`compliance` only the opt-out ledger (list, record, export) and a phone's status. The API and
the console refuse the rest with 403, with real keys of each scope and the real app."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from gateway import accounts
from gateway.auth import SCOPE_ROUTES
from gateway.db import SessionFactory, transaction
from gateway.models import KeyScope

# The words, written out here rather than read from gateway.auth: what a
# `compliance` key may call. Everything else must be refused to it.
COMPLIANCE_ALLOWED = {
    ("GET", "/v1/opt-outs"),
    ("HEAD", "/v1/opt-outs"),
    ("POST", "/v1/opt-outs"),
    ("GET", "/v1/opt-outs/export"),
    ("HEAD", "/v1/opt-outs/export"),
    ("GET", "/v1/opt-outs/{phone}"),
    ("HEAD", "/v1/opt-outs/{phone}"),
}


def _expected_allowed(scope: KeyScope, method: str, template: str) -> bool:
    if scope == KeyScope.FULL:
        return True
    if scope == KeyScope.READ:
        return method in ("GET", "HEAD")
    return (method, template) in COMPLIANCE_ALLOWED


def _api_operations(client: TestClient) -> Iterator[tuple[str, str]]:
    for route in client.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, Route) and route.path.startswith("/v1/"):
            for method in sorted(route.methods or ()):
                yield method, route.path


def _concrete(template: str) -> str:
    # Any value will do: scopes are decided before the handler looks the id up.
    return re.sub(r"\{[^}]+\}", "x_none", template)


@pytest.fixture
async def keys(sessions: SessionFactory) -> dict[KeyScope, str]:
    async with transaction(sessions) as session:
        account, _first = await accounts.create_account(session, "Acme Lending")
        issued = {
            scope: await accounts.create_key(session, account.id, scope.value, scope)
            for scope in KeyScope
        }
    return {scope: key.secret for scope, key in issued.items()}


def test_the_compliance_table_names_real_routes(client: TestClient) -> None:
    operations = set(_api_operations(client))
    for routes in SCOPE_ROUTES.values():
        assert routes <= operations


def test_every_api_route_is_refused_or_allowed_by_scope(
    client: TestClient, keys: dict[KeyScope, str]
) -> None:
    operations = list(_api_operations(client))
    assert len(operations) > 50  # the walk saw the whole API, not an empty list
    for method, template in operations:
        path = _concrete(template)
        for scope, secret in keys.items():
            response = client.request(
                method,
                path,
                headers={"Authorization": secret},
                json={} if method in ("POST", "PUT", "PATCH") else None,
            )
            where = f"{scope.value} {method} {template} -> {response.status_code}"
            if _expected_allowed(scope, method, template):
                refused = response.status_code == 403 and (
                    response.json()["error"]["code"] == "scope_forbidden"
                )
                assert not refused, where
            else:
                assert response.status_code == 403, where
                if method != "HEAD":  # a HEAD answer has no body
                    assert response.json()["error"]["code"] == "scope_forbidden", where


def test_the_refusal_says_which_scope_is_needed(
    client: TestClient, keys: dict[KeyScope, str]
) -> None:
    read = client.post("/v1/opt-outs", headers={"Authorization": keys[KeyScope.READ]}, json={})
    assert read.status_code == 403
    assert read.json()["error"] == {
        "code": "scope_forbidden",
        "message": "this API key's scope is `read`; POST /v1/opt-outs needs a key with scope "
        "`full` or `compliance`",
    }
    leads = client.get("/v1/leads", headers={"Authorization": keys[KeyScope.COMPLIANCE]})
    assert leads.json()["error"]["message"].endswith("needs a key with scope `full` or `read`")


def test_a_compliance_key_records_and_reads_the_ledger(
    client: TestClient, keys: dict[KeyScope, str]
) -> None:
    headers = {"Authorization": keys[KeyScope.COMPLIANCE]}
    created = client.post(
        "/v1/opt-outs",
        headers=headers,
        json={"phone": "+14155550123", "actor": "jane@acme.test", "note": "asked by phone"},
    )
    assert created.status_code == 201, created.text
    listed = client.get("/v1/opt-outs", headers=headers)
    assert [row["phone"] for row in listed.json()["data"]] == ["+14155550123"]
    status = client.get("/v1/opt-outs/+14155550123", headers=headers)
    assert status.json()["status"] == "opted_out"
    export = client.get("/v1/opt-outs/export?format=csv", headers=headers)
    assert export.status_code == 200 and "+14155550123" in export.text


# Console pages: every page under /console, signed in with each scope.


def _console_pages(client: TestClient) -> Iterator[tuple[str, str]]:
    for mount in client.app.routes:  # type: ignore[attr-defined]
        if isinstance(mount, Mount) and mount.path == "/console":
            for route in mount.routes:
                if isinstance(route, Route):
                    for method in sorted(route.methods or ()):
                        yield method, "/console" + route.path


def _console_expected(scope: KeyScope, method: str, path: str) -> bool:
    if path in ("/console/", "/console/sign-in", "/console/sign-out") or scope == KeyScope.FULL:
        return True
    if scope == KeyScope.READ:
        return method in ("GET", "HEAD")
    return path.startswith("/console/compliance")


def _sign_in(client: TestClient, secret: str) -> None:
    form = client.get("/console/sign-in")
    match = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert match is not None
    signed_in = client.post(
        "/console/sign-in", data={"csrf": match.group(1), "key": secret}, follow_redirects=False
    )
    assert signed_in.status_code == 303, signed_in.text


def test_every_console_page_is_refused_or_allowed_by_scope(
    client: TestClient, keys: dict[KeyScope, str]
) -> None:
    pages = list(_console_pages(client))
    assert ("POST", "/console/compliance/check") in pages
    # Reps, leads and webhooks are walked too (read: their GETs only; compliance: none).
    for page in (
        ("GET", "/console/reps"),
        ("POST", "/console/reps"),
        ("POST", "/console/reps/{rep_id}/availability"),
        ("GET", "/console/leads"),
        ("GET", "/console/leads/{lead_id}"),
        ("GET", "/console/webhooks"),
        ("POST", "/console/webhooks"),
        ("GET", "/console/webhooks/{webhook_id}"),
        ("POST", "/console/webhooks/{webhook_id}/enabled"),
        ("POST", "/console/webhooks/{webhook_id}/delete"),
        ("POST", "/console/webhooks/{webhook_id}/rotate-secret"),
        ("POST", "/console/webhooks/{webhook_id}/replay"),
        ("POST", "/console/webhooks/{webhook_id}/test"),
        ("POST", "/console/deliveries/{delivery_id}/replay"),
    ):
        assert page in pages, page
    # The Conversations section's fragments and actions are walked too (read: GETs only).
    for action in ("stop", "messages", "resume", "party-line", "assign", "unassign"):
        assert ("POST", f"/console/plays/{{play_id}}/{action}") in pages
    assert ("GET", "/console/plays/{play_id}/entries") in pages
    assert ("GET", "/console/plays/rows") in pages
    # Playbooks and source rules are walked too (read: their GETs only; compliance: none).
    for page in (
        ("GET", "/console/playbooks"),
        ("POST", "/console/playbooks"),
        ("GET", "/console/playbooks/{playbook_id}"),
        ("POST", "/console/playbooks/{playbook_id}/publish"),
        ("POST", "/console/playbooks/{playbook_id}/clone"),
        ("POST", "/console/playbooks/{playbook_id}/delete"),
        ("GET", "/console/sources"),
        ("POST", "/console/sources"),
        ("GET", "/console/sources/{rule_id}"),
        ("POST", "/console/sources/{rule_id}"),
        ("POST", "/console/sources/{rule_id}/clone"),
        ("POST", "/console/sources/{rule_id}/delete"),
        # Numbers and the start form (read: the list only; compliance: none).
        ("GET", "/console/numbers"),
        ("POST", "/console/numbers"),
        ("POST", "/console/numbers/{number_id}/delete"),
        ("POST", "/console/plays"),
    ):
        assert page in pages, page
    for scope, secret in keys.items():
        client.cookies.clear()
        _sign_in(client, secret)
        for method, template in pages:
            if template == "/console/sign-out":
                continue  # it would end the session the walk needs; open to every scope
            response = client.request(method, _concrete(template), follow_redirects=False)
            refused = response.status_code == 403 and "scope is" in response.text
            where = f"{scope.value} {method} {template} -> {response.status_code}"
            if method == "HEAD":
                refused = response.status_code == 403
                if _console_expected(scope, method, template):
                    # A HEAD has no body to tell a CSRF 403 from a scope 403: GET pages only.
                    assert not refused, where
                    continue
            assert refused != _console_expected(scope, method, template), where


def test_a_read_key_sees_the_compliance_page_but_posts_no_form(
    client: TestClient, keys: dict[KeyScope, str]
) -> None:
    _sign_in(client, keys[KeyScope.READ])
    assert client.get("/console/compliance").status_code == 200
    check = client.post("/console/compliance/check", data={"phone": "+14155550123"})
    assert check.status_code == 403 and "scope is read" in check.text
