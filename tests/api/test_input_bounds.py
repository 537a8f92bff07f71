"""Datetimes and free JSON a client gives: any value answers 2xx or a clear 422, never a 500, and
a refused request stores nothing.

Property-based over the whole class (every offset, every year 1..9999, nesting at any depth),
with the values that used to crash given explicitly.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import hypothesis
import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tests.support.tenants import Tenant

EDGES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00Z"]

settings = hypothesis.settings(
    max_examples=60,
    deadline=None,  # in-process HTTP calls; speed is for bench/
    database=None,  # no example database in the work tree
    derandomize=True,  # the same examples on every run
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

offsets = st.timedeltas(min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23))
moments = st.builds(
    lambda naive, offset: naive.replace(tzinfo=timezone(offset)).isoformat(),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    offsets,
)


def _stored(client: TestClient, tenant: Tenant, path: str, phone: str) -> list[Any]:
    response = client.get(f"{path}?phone={quote(phone)}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    data: list[Any] = response.json()["data"]
    return data


def _refused_or_ok(status: int) -> None:
    assert status < 500
    assert status in (200, 201, 202, 422), status


@pytest.mark.parametrize(
    "path",
    ["/v1/plays?since={}", "/v1/opt-outs?since={}", "/v1/opt-outs?until={}", "/v1/leads?since={}"],
)
def test_query_datetimes(client: TestClient, tenant_a: Tenant, path: str) -> None:
    @settings
    @given(moment=moments)
    @example(moment=EDGES[0])
    @example(moment=EDGES[1])
    def run(moment: str) -> None:
        response = client.get(path.format(quote(moment)), headers=tenant_a.headers)
        if path.startswith("/v1/leads"):
            assert response.status_code == 422  # /v1/leads has no `since`: unknown fields refused
            return
        _refused_or_ok(response.status_code)
        if moment in EDGES:
            assert response.status_code == 422
            assert "between 1900 and 2999" in response.json()["error"]["message"]

    run()


def test_export_bounds_refused_before_streaming(client: TestClient, tenant_a: Tenant) -> None:
    for moment in EDGES:
        response = client.get(
            f"/v1/opt-outs/export?until={quote(moment)}", headers=tenant_a.headers
        )
        assert response.status_code == 422
        assert response.json()["error"]["field"] == "until"


def test_consent_and_opt_out_datetimes(client: TestClient, tenant_a: Tenant) -> None:
    phones = iter(range(10_000))

    @settings
    @given(moment=moments)
    @example(moment=EDGES[0])
    @example(moment=EDGES[1])
    def run(moment: str) -> None:
        phone = f"+1415555{next(phones):04d}"
        lead = client.post(
            "/v1/leads",
            headers=tenant_a.headers,
            json={"phone": phone, "consent": {"captured_at": moment}},
        )
        opt_out = client.post(
            "/v1/opt-outs", headers=tenant_a.headers, json={"phone": phone, "received_at": moment}
        )
        _refused_or_ok(lead.status_code)
        _refused_or_ok(opt_out.status_code)
        # A refused request stores nothing: no lead (nor its consent), no ledger event.
        assert bool(_stored(client, tenant_a, "/v1/leads", phone)) == (lead.status_code == 201)
        opted_out = bool(_stored(client, tenant_a, "/v1/opt-outs", phone))
        assert opted_out == (opt_out.status_code == 201)

    run()


def test_replay_range_datetimes(client: TestClient, tenant_a: Tenant) -> None:
    created = client.post(
        "/v1/webhooks",
        headers=tenant_a.headers,
        # A public literal: nothing is ever sent, the account has no activity to send.
        json={"url": "https://8.8.8.8/in", "activities": ["started"]},
    )
    assert created.status_code == 201, created.text
    webhook = created.json()["id"]

    @settings
    @given(since=moments, until=st.one_of(st.none(), moments))
    @example(since=EDGES[0], until=None)
    @example(since="2026-01-01T00:00:00Z", until=EDGES[1])
    def run(since: str, until: str | None) -> None:
        query = f"since={quote(since)}" + (f"&until={quote(until)}" if until else "")
        response = client.post(f"/v1/webhooks/{webhook}/replay?{query}", headers=tenant_a.headers)
        _refused_or_ok(response.status_code)

    run()


def _nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return {"root": value}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=40,
)


def test_additional_info_of_any_shape(client: TestClient, tenant_a: Tenant) -> None:
    phones = iter(range(10_000))

    @settings
    @given(info=st.one_of(st.dictionaries(st.text(max_size=5), json_values, max_size=4),
                          st.integers(min_value=1, max_value=950).map(_nested)))  # fmt: skip
    @example(info=_nested(900))
    def run(info: dict[str, Any]) -> None:
        phone = f"+1415556{next(phones):04d}"
        response = client.post(
            "/v1/leads", headers=tenant_a.headers, json={"phone": phone, "additional_info": info}
        )
        _refused_or_ok(response.status_code)
        if response.status_code == 422:
            assert response.json()["error"]["field"] == "additional_info"
            assert _stored(client, tenant_a, "/v1/leads", phone) == []
        # Whatever was stored, the account's leads can still be listed.
        assert client.get("/v1/leads?limit=200", headers=tenant_a.headers).status_code == 200

    run()
    deep = client.post(
        "/v1/leads",
        headers=tenant_a.headers,
        json={"phone": "+14155550999", "additional_info": _nested(900)},
    )
    assert deep.status_code == 422
    assert "nested deeper than" in deep.json()["error"]["message"]


def test_a_field_called_body_is_named_in_the_error(client: TestClient, tenant_a: Tenant) -> None:
    response = client.post(
        "/v1/messages", headers=tenant_a.headers, json={"to": "+18085550123", "body": ""}
    )
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "body"
