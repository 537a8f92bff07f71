"""Webhook URLs the gateway refuses: non-global addresses however they are written (IPv4 inside
IPv6, odd IPv4 spellings), and URLs no request can be built from (line breaks, controls,
credentials, other schemes, too long): at the API, in the unit, and for rows already stored."""

from __future__ import annotations

import ipaddress

import pytest
from sqlmodel import select
from starlette.testclient import TestClient

from gateway.db import SessionFactory, transaction
from gateway.ids import new_id
from gateway.models import DeliveryStatus, WebhookSubscription
from gateway.webhooks import signing
from gateway.webhooks.addresses import AddressRefused, check_form, check_url, public
from tests.conftest import RunWorker
from tests.support.tenants import Tenant, new_tenant
from tests.support.webhook_endpoint import WebhookEndpoint

from .conftest import deliveries, new_play, record, settle, subscribe

# Each names a loopback, private, link-local, reserved or multicast address.
NON_GLOBAL = [
    # IPv4 inside IPv6
    "[::7f00:1]",  # IPv4-compatible ::127.0.0.1
    "[::127.0.0.1]",
    "[::a9fe:a9fe]",
    "[::ffff:0:7f00:1]",  # IPv4-translated
    "[::ffff:0:a00:1]",
    "[::ffff:127.0.0.1]",  # IPv4-mapped
    "[::ffff:7f00:1]",
    "[::ffff:169.254.169.254]",
    "[64:ff9b::a9fe:a9fe]",  # NAT64 of 169.254.169.254
    "[64:ff9b::7f00:1]",
    "[64:ff9b::10.0.0.1]",
    "[64:ff9b:1::a9fe:a9fe]",  # local-use NAT64
    "[64:ff9b:1:fffe::1]",
    "[2002:7f00:1::]",  # 6to4 of 127.0.0.1
    "[2002:a9fe:a9fe::1]",
    "[2002:c0a8:101::1]",
    "[2001:0:4136:e378:8000:63bf:80ff:fffe]",  # Teredo, client 127.0.0.1
    "[2001:0:7f00:1::1]",  # Teredo, server 127.0.0.1
    "[fec0::1]",  # site-local
    # the usual
    "127.0.0.1",
    "127.255.255.254",
    "0.0.0.0",
    "0.1.2.3",
    "10.1.2.3",
    "100.64.0.1",  # CGNAT
    "100.127.255.254",
    "169.254.169.254",
    "172.16.0.1",
    "192.0.0.1",
    "192.168.1.1",
    "198.18.0.1",
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "[::]",
    "[::1]",
    "[fc00::1]",
    "[fd12:3456::1]",
    "[fe80::1]",
    "[ff02::1]",
    "[ff0e::1]",
    "[2001:db8::1]",
    "[100::1]",
]
# IPv4 written as one number, in hex or in octal: resolvers read 127.0.0.1 (or a name).
ODD_IPV4 = ["2130706433", "0x7f.1", "0177.0.0.1", "127.1", "0x7f000001", "017700000001"]
GLOBAL = [
    "8.8.8.8",
    "[2606:4700:4700::1111]",
    "[::ffff:8.8.8.8]",
    "[64:ff9b::808:808]",  # NAT64 of 8.8.8.8
    "[2002:808:808::1]",  # 6to4 of 8.8.8.8
]
UNUSABLE = [
    ("http://8.8.8.8/x\r\nX-Injected: 1", "control"),
    ("http://8.8.8.8/x\ny", "control"),
    ("http://8.8.8.8/x\ty", "control"),
    ("http://8.8.8.8/a b", "whitespace"),
    (" http://8.8.8.8/", "whitespace"),
    ("http://8.8.8.8/\x00", "control"),
    ("http://8.8.8.8/\x7f", "control"),
    ("http://8.8.8.8/\u200b", "control"),  # zero-width space
    ("http://8.8.8.8/\u2028", "whitespace"),
    ("http://user@8.8.8.8/", "credentials"),
    ("http://@8.8.8.8/", "credentials"),
    ("http://user:pw@8.8.8.8/", "credentials"),
    ("ftp://8.8.8.8/", "http(s)"),
    ("file:///etc/passwd", "http(s)"),
    ("gopher://8.8.8.8:70/", "http(s)"),
    ("javascript:alert(1)", "http(s)"),
    ("//8.8.8.8/x", "http(s)"),
    ("http://8.8.8.8:0/", "port"),
    ("http://[fe80::1%25eth0]/", "%"),
    ("http://8.8.8.8/" + "a" * 2040, "2048"),
]


def url_of(host: str) -> str:
    return f"http://{host}/hook"


@pytest.mark.parametrize("host", NON_GLOBAL)
def test_non_global_addresses_are_not_public(host: str) -> None:
    assert not public(ipaddress.ip_address(host.strip("[]")))


@pytest.mark.parametrize("host", GLOBAL)
def test_global_addresses_are_public(host: str) -> None:
    assert public(ipaddress.ip_address(host.strip("[]")))


@pytest.mark.parametrize("host", NON_GLOBAL + ODD_IPV4)
async def test_check_refuses_non_global_literals(host: str) -> None:
    with pytest.raises(AddressRefused):
        await check_url(url_of(host), https_required=False, allow_private=False)


@pytest.mark.parametrize("host", ODD_IPV4)
async def test_odd_ipv4_spellings_are_refused_even_where_private_is_allowed(host: str) -> None:
    with pytest.raises(AddressRefused, match=r"four decimal numbers|not a valid URL") as refused:
        await check_url(url_of(host), https_required=False, allow_private=True)
    assert refused.value.permanent


async def test_an_embedded_address_is_named_in_the_refusal() -> None:
    with pytest.raises(AddressRefused, match=r"64:ff9b::a9fe:a9fe \(carrying 169\.254\.169\.254\)"):
        await check_url(url_of("[64:ff9b::a9fe:a9fe]"), https_required=False, allow_private=False)


@pytest.mark.parametrize("host", GLOBAL)
async def test_check_accepts_global_literals(host: str) -> None:
    target = await check_url(url_of(host), https_required=False, allow_private=False)
    assert [str(a) for a in target.addresses] == [str(ipaddress.ip_address(host.strip("[]")))]


@pytest.mark.parametrize(("url", "why"), UNUSABLE)
def test_unusable_urls_are_refused_for_good(url: str, why: str) -> None:
    with pytest.raises(AddressRefused, match=why) as refused:
        check_form(url, https_required=False)
    assert refused.value.permanent


@pytest.mark.parametrize("host", NON_GLOBAL + ODD_IPV4)
async def test_api_refuses_non_global_addresses(
    client: TestClient, sessions: SessionFactory, host: str
) -> None:
    tenant = await new_tenant(sessions, "No Private", private=False)
    response = client.post("/v1/webhooks", headers=tenant.headers, json={"url": url_of(host)})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "url_refused"
    assert response.json()["error"]["field"] == "url"


@pytest.mark.parametrize(("url", "why"), UNUSABLE)
def test_api_refuses_unusable_urls(client: TestClient, tenant: Tenant, url: str, why: str) -> None:
    created = client.post("/v1/webhooks", headers=tenant.headers, json={"url": url})
    assert created.status_code == 422, created.text
    assert created.json()["error"]["field"] == "url"
    hook = subscribe(client, tenant, "http://8.8.8.8/hook")
    moved = client.patch(f"/v1/webhooks/{hook['id']}", headers=tenant.headers, json={"url": url})
    assert moved.status_code == 422, moved.text
    assert moved.json()["error"]["field"] == "url"
    listed = client.get("/v1/webhooks", headers=tenant.headers).json()["data"]
    assert [w["url"] for w in listed] == ["http://8.8.8.8/hook"]


async def _stored(sessions: SessionFactory, tenant: Tenant, url: str) -> str:
    """A subscription row written past the API, as rows saved before the check tightened."""
    async with transaction(sessions) as session:
        row = WebhookSubscription(
            id=new_id("whk"), account_id=tenant.account_id, url=url, secret=signing.new_secret()
        )
        session.add(row)
    return row.id


STORED_BAD = [  # appended to the receiver's URL (too long can't be stored: VARCHAR(2000))
    "/x\r\nX-Injected: 1",
    "/x y",
    "/\u200bx",
]


@pytest.mark.parametrize("suffix", STORED_BAD)
async def test_a_stored_bad_url_is_dead_lettered_with_a_reason_not_retried(
    sessions: SessionFactory,
    tenant: Tenant,
    receiver: WebhookEndpoint,
    run_worker: RunWorker,
    suffix: str,
) -> None:
    await _stored(sessions, tenant, receiver.url + suffix)
    play = await new_play(sessions, tenant.account_id)
    await record(sessions, play, "started")
    await settle(run_worker, sessions)
    [delivery] = await deliveries(sessions)
    assert delivery.status == DeliveryStatus.DEAD and delivery.attempts == 1
    assert delivery.next_attempt_at is None
    assert delivery.last_error is not None
    assert delivery.last_error.startswith("address refused: ")
    assert delivery.last_error.endswith("not retried: the URL can never work")
    assert receiver.received == []


async def test_a_stored_odd_ipv4_url_is_dead_lettered(
    sessions: SessionFactory, tenant: Tenant, run_worker: RunWorker
) -> None:
    # The account may reach private addresses and the resolver reads 127.0.0.1, but the HTTP
    # client can't parse it: it crashed every job before.
    await _stored(sessions, tenant, "http://0177.0.0.1:9/hook")
    play = await new_play(sessions, tenant.account_id)
    await record(sessions, play, "started")
    await settle(run_worker, sessions)
    [delivery] = await deliveries(sessions)
    assert delivery.status == DeliveryStatus.DEAD and delivery.attempts == 1


@pytest.mark.parametrize("suffix", STORED_BAD)
async def test_the_test_tool_on_a_stored_bad_url_answers_not_500(
    client: TestClient,
    sessions: SessionFactory,
    tenant: Tenant,
    receiver: WebhookEndpoint,
    suffix: str,
) -> None:
    hook_id = await _stored(sessions, tenant, receiver.url + suffix)
    answered = client.post(
        f"/v1/webhooks/{hook_id}/test?activity=opted_out", headers=tenant.headers
    )
    assert answered.status_code == 200, answered.text
    result = answered.json()
    assert result["delivered"] is False and result["status_code"] is None
    assert result["error"].startswith("address refused: ")
    assert receiver.received == []
    async with sessions() as session:  # nothing stored by the test tool
        assert (await session.exec(select(WebhookSubscription))).all()[0].id == hook_id
