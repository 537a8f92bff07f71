"""DNS rebinding: a webhook request connects to the address its check approved, found by one
lookup, while the Host header and TLS verification keep the URL's name. The lookups are
answered by a resolver the test controls; the only network is 127.0.0.1."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway.db import SessionFactory
from gateway.models import DeliveryStatus
from gateway.webhooks import addresses, sending
from tests.conftest import RunWorker
from tests.support.tenants import Tenant
from tests.support.webhook_endpoint import WebhookEndpoint

from .conftest import deliveries, new_play, record, settle, subscribe

NAME = "hooks.rebind.test"  # resolvable only through the test's resolver


class Dns:
    """Answers per name, one list per lookup (the last one repeats); records every lookup."""

    def __init__(self) -> None:
        self.answers: dict[str, list[list[str]]] = {}
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        queue = self.answers.get(host)
        if not queue:
            raise OSError(f"{host}: no such name")
        return queue.pop(0) if len(queue) > 1 else queue[0]


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Dns:
    found = Dns()
    monkeypatch.setattr(addresses, "RESOLVER", found)
    return found


def rebinding(dns: Dns) -> None:
    """The name answers 127.0.0.1 (where the receiver is) once, then 127.0.0.2 (nothing there):
    a second lookup by the HTTP client would miss the receiver."""
    dns.answers[NAME] = [["127.0.0.1"], ["127.0.0.2"]]
    dns.lookups.clear()


async def test_a_delivery_connects_to_the_checked_address_after_one_lookup(
    client: TestClient,
    *,
    sessions: SessionFactory,
    tenant: Tenant,
    receiver: WebhookEndpoint,
    run_worker: RunWorker,
    dns: Dns,
) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    dns.answers[NAME] = [["127.0.0.1"]]
    subscribe(client, tenant, f"http://{NAME}:{port}/hook")  # the tenant may reach 127.0.0.1
    rebinding(dns)
    play = await new_play(sessions, tenant.account_id)
    await record(sessions, play, "started")
    await settle(run_worker, sessions)
    assert dns.lookups == [NAME]
    [got] = receiver.received
    assert got.path == "/hook" and got.headers["host"] == f"{NAME}:{port}"
    [delivery] = await deliveries(sessions)
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 1


async def test_the_test_tool_connects_to_the_checked_address_after_one_lookup(
    client: TestClient, tenant: Tenant, receiver: WebhookEndpoint, dns: Dns
) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    dns.answers[NAME] = [["127.0.0.1"]]
    hook = subscribe(client, tenant, f"http://{NAME}:{port}/hook")
    rebinding(dns)
    answered = client.post(
        f"/v1/webhooks/{hook['id']}/test?activity=opted_out", headers=tenant.headers
    )
    assert answered.status_code == 200, answered.text
    assert answered.json()["delivered"] is True, answered.json()
    assert dns.lookups == [NAME]
    [got] = receiver.received
    assert got.headers["host"] == f"{NAME}:{port}"


async def test_the_client_never_connects_to_an_unchecked_host(
    receiver: WebhookEndpoint, dns: Dns
) -> None:
    port = int(receiver.url.rsplit(":", 1)[1])
    dns.answers[NAME] = [["127.0.0.1"]]
    async with sending.new_client() as clients:
        assert clients.for_policy(True) is not clients.for_policy(False)  # pools by policy
        for allow_private in (True, False):
            client = clients.for_policy(allow_private)
            # An address in the URL (no resolver is asked) and a name, neither checked.
            for url in (receiver.url + "/direct", f"http://{NAME}:{port}/direct"):
                with pytest.raises(sending.Unchecked, match="was not checked"):
                    await client.post(url)
    assert receiver.received == []


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[WebhookEndpoint, Path]]:
    """A receiver on 127.0.0.1 serving https with a self-signed certificate for NAME only."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={NAME}",
         "-addext", f"subjectAltName=DNS:{NAME}"],
        check=True, capture_output=True,
    )  # fmt: skip
    found = WebhookEndpoint()
    app = Starlette(routes=[Route("/{path:path}", found.handle, methods=["POST"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, ssl_certfile=cert, ssl_keyfile=key
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.005)
    assert server.started, "TLS receiver did not start"
    found.url = f"https://{NAME}:{sock.getsockname()[1]}"
    try:
        yield found, cert
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()


async def test_tls_verifies_the_urls_name_not_the_address(
    tls_receiver: tuple[WebhookEndpoint, Path], dns: Dns
) -> None:
    receiver, cert = tls_receiver
    port = receiver.url.rsplit(":", 1)[1]
    dns.answers[NAME] = [["127.0.0.1"]]
    dns.answers["other.rebind.test"] = [["127.0.0.1"]]  # same address, a name the cert lacks
    trusted = ssl.create_default_context(cafile=str(cert))

    async def send(url: str) -> sending.Outcome:
        async with sending.new_client(trusted) as clients:
            return await sending.post(
                clients, url, {"id": "evt_test_tls"}, signing_secrets=["whsec_test"],
                delivery_id="dlv_test_tls", https_required=True, allow_private=True,
            )  # fmt: skip

    good = await send(receiver.url + "/hook")
    assert good.delivered, good
    [got] = receiver.received
    assert got.headers["host"] == f"{NAME}:{port}"
    wrong = await send(f"https://other.rebind.test:{port}/hook")
    assert not wrong.delivered and wrong.error is not None
    assert "CERTIFICATE_VERIFY_FAILED" in wrong.error and "other.rebind.test" in wrong.error
    assert len(receiver.received) == 1
