"""The console's Webhooks pages in a real browser, against the app on 127.0.0.1 and a customer's
endpoint (tests.support.webhook_endpoint) on another port: a subscription created (refused to
127.0.0.1 until the operator allows the account private addresses), its secret shown once; the
test tool sends a playbook's activity and shows what the endpoint answered; the secret rotated
and shown once; a delivery made by a real play replayed, one and by time range; disable,
enable and delete; a forged rotation refused (CSRF)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from gateway import accounts
from gateway.console.sessions import COOKIE
from gateway.db import SessionFactory, create_engine, session_factory, transaction
from gateway.settings import Settings
from gateway.webhooks.addresses import set_private_allowed
from tests.conftest import RunWorker
from tests.support.console import WAIT, api_client, sign_in, tamper, wait_for, wait_text
from tests.support.webhook_endpoint import WebhookEndpoint, WebhookEndpointServer

LEAD = "+14155550123"
PLAYBOOK = """\
name: Hello
activities:
  events: [asked_rate]
  outcomes: [qualified]
steps:
  - id: hi
    kind: ask
    text: "Hi {lead.first_name|there}, still interested? Reply YES"
    choices:
      - keywords: [yes]
        outcome: qualified
      - keywords: [rate]
        event: asked_rate
"""


@pytest.fixture
def receiver() -> Iterator[WebhookEndpoint]:
    found = WebhookEndpoint()
    server = WebhookEndpointServer(found)
    server.start()
    try:
        yield found
    finally:
        server.stop()


def _allow_private(settings: Settings, account_id: str) -> None:
    """The operator's allowance (never the account's own): webhooks may reach 127.0.0.1."""

    async def allow() -> None:
        # Its own engine in its own loop: the test is synchronous, the server runs in a thread.
        engine = create_engine(settings.database)
        try:
            async with transaction(session_factory(engine)) as session:
                await set_private_allowed(session, account_id, True)
        finally:
            await engine.dispose()

    asyncio.run(allow())


@pytest.fixture
async def private_key(
    sessions: SessionFactory, issued_key: accounts.IssuedKey
) -> accounts.IssuedKey:
    """The account's key, its account allowed private addresses by the operator."""
    async with transaction(sessions) as session:
        await set_private_allowed(session, issued_key.key.account_id, True)
    return issued_key


def _publish(url: str, key: accounts.IssuedKey) -> None:
    with api_client(url, key) as api:
        published = api.put(
            "/v1/playbooks/hello", content=PLAYBOOK, headers={"Content-Type": "application/yaml"}
        )
    assert published.status_code == 201, published.text


def _signed_in(browser: webdriver.Chrome, url: str, key: accounts.IssuedKey) -> None:
    sign_in(browser, url, key.secret)
    wait_for(browser, "nav-webhooks")


def _labelled(browser: webdriver.Chrome) -> None:
    controls = browser.find_elements(By.CSS_SELECTOR, "input:not([type=hidden]), select")
    assert controls
    for control in controls:
        control_id = control.get_attribute("id")
        assert browser.find_elements(By.CSS_SELECTOR, f"label[for='{control_id}']"), control_id


def _fits_360(browser: webdriver.Chrome, element_id: str) -> None:
    size = browser.get_window_size()
    browser.set_window_size(360, 800)
    try:
        browser.refresh()
        wait_for(browser, element_id)
        width = browser.execute_script("return document.documentElement.clientWidth")
        scroll = browser.execute_script("return document.documentElement.scrollWidth")
        assert scroll <= width
    finally:
        browser.set_window_size(size["width"], size["height"])


def _secret(browser: webdriver.Chrome) -> str:
    wait_for(browser, "secret")
    value = browser.find_element(By.ID, "secret").get_attribute("value")
    assert value
    return str(value)


def test_subscribe_send_a_test_and_rotate_the_secret(
    browser: webdriver.Chrome,
    console: str,
    issued_key: accounts.IssuedKey,
    settings: Settings,
    receiver: WebhookEndpoint,
) -> None:
    _publish(console, issued_key)
    _signed_in(browser, console, issued_key)
    browser.find_element(By.ID, "nav-webhooks").click()
    wait_for(browser, "webhooks")
    _labelled(browser)
    hook_url = receiver.url + "/hooks"

    # The SSRF policy: 127.0.0.1 is refused until the operator allows private addresses.
    browser.find_element(By.ID, "webhook-url").send_keys(hook_url)
    browser.find_element(By.ID, "create-webhook").click()
    wait_for(browser, "webhooks-error")
    assert browser.find_element(By.ID, "webhooks-error").text.startswith("url: ")
    assert browser.find_element(By.ID, "webhook-url").get_attribute("value") == hook_url
    with api_client(console, issued_key) as api:
        assert api.get("/v1/webhooks").json()["data"] == []

    _allow_private(settings, issued_key.key.account_id)
    browser.find_element(By.ID, "webhook-activities").clear()
    browser.find_element(By.ID, "webhook-activities").send_keys("qualified, asked_rate")
    Select(browser.find_element(By.ID, "webhook-playbook")).select_by_value("hello")
    browser.find_element(By.ID, "webhook-description").send_keys("CRM")
    browser.find_element(By.ID, "create-webhook").click()
    created_secret = _secret(browser)
    with api_client(console, issued_key) as api:
        [hook] = api.get("/v1/webhooks").json()["data"]
    assert (hook["url"], hook["activities"], hook["playbook_id"]) == (
        hook_url,
        ["qualified", "asked_rate"],
        "hello",
    )

    # To the subscription's page: the secret is not there, nor anywhere after its answer.
    browser.find_element(By.ID, "to-webhook").click()
    wait_for(browser, "webhook-summary")
    assert created_secret not in browser.page_source
    _labelled(browser)

    # The test tool: the playbook, one of its activities, the endpoint's answer.
    Select(browser.find_element(By.ID, "test-playbook-choice")).select_by_value("hello")
    browser.find_element(By.ID, "show-activities").click()
    WebDriverWait(browser, WAIT).until(ec.url_contains("test_playbook=hello"))
    wait_for(browser, "test-activity")
    Select(browser.find_element(By.ID, "test-activity")).select_by_value("asked_rate")
    receiver.answer = lambda _r: 202
    browser.find_element(By.ID, "send-test").click()
    wait_for(browser, "test-result")
    assert browser.find_element(By.ID, "test-delivered").text == "yes"
    assert browser.find_element(By.ID, "test-status").text == "202"
    assert browser.find_element(By.ID, "test-response").text == "answer 202"
    [sent] = receiver.bodies("/hooks")
    assert sent["activity_label"] == "asked_rate"
    assert sent["id"].startswith("evt_test_")
    # An endpoint that fails is shown failing, with its answer.
    receiver.answer = lambda _r: 500
    Select(browser.find_element(By.ID, "test-activity")).select_by_value("qualified")
    browser.find_element(By.ID, "send-test").click()
    wait_text(browser, "#test-status", "500")
    assert browser.find_element(By.ID, "test-delivered").text == "no"
    assert browser.find_element(By.ID, "test-response").text == "answer 500"
    assert [body["activity_label"] for body in receiver.bodies("/hooks")] == [
        "asked_rate",
        "qualified",
    ]
    # Nothing the test sends is stored as a delivery.
    assert "No deliveries." in browser.find_element(By.ID, "deliveries").text

    # Rotate: the new secret on the answer page only; the old one signs for a while too.
    browser.find_element(By.ID, "rotate").click()
    rotated_secret = _secret(browser)
    assert rotated_secret != created_secret
    assert browser.find_element(By.ID, "overlap").text.startswith("Until ")
    browser.find_element(By.ID, "to-webhook").click()
    wait_for(browser, "webhook-summary")
    assert rotated_secret not in browser.page_source
    assert created_secret not in browser.page_source
    browser.get(f"{console}/console/webhooks")
    wait_for(browser, "webhooks")
    assert rotated_secret not in browser.page_source
    # The endpoint now sees requests signed with both secrets (two v1= signatures).
    receiver.answer = lambda _r: 200
    browser.get(f"{console}/console/webhooks/{hook['id']}")
    wait_for(browser, "send-test")
    browser.find_element(By.ID, "send-test").click()
    wait_for(browser, "test-result")
    signature = receiver.received[-1].headers["webhook-signature"]
    assert signature.count("v1,") == 2, signature
    _fits_360(browser, "webhook-summary")


def _settle(run_worker: RunWorker, receiver: WebhookEndpoint, count: int) -> None:
    """Burst workers until the endpoint has had `count` requests (a burst's sweep finds the
    deliveries the web process committed; the first burst may be busy with the play's text)."""
    for _ in range(10):
        asyncio.run(run_worker())
        if len(receiver.received) >= count:
            return
    raise AssertionError(f"the endpoint had {len(receiver.received)} requests, not {count}")


def _deliveries(browser: webdriver.Chrome) -> list[dict[str, str]]:
    rows = browser.find_elements(By.CSS_SELECTOR, "#deliveries tbody tr[id^=delivery-]")
    return [
        {
            "id": str(row.get_attribute("id")).removeprefix("delivery-"),
            "status": row.find_element(By.CSS_SELECTOR, ".delivery-status").text,
            "code": row.find_element(By.CSS_SELECTOR, ".delivery-code").text,
            "body": row.find_element(By.CSS_SELECTOR, ".delivery-body").text,
        }
        for row in rows
    ]


def test_a_delivery_is_replayed_one_and_by_range(
    browser: webdriver.Chrome,
    console: str,
    private_key: accounts.IssuedKey,
    receiver: WebhookEndpoint,
    run_worker: RunWorker,
) -> None:
    issued_key = private_key
    _publish(console, issued_key)
    with api_client(console, issued_key) as api:
        made = api.post(
            "/v1/webhooks", json={"url": receiver.url + "/hooks", "activities": ["stopped"]}
        )
        assert made.status_code == 201, made.text
        hook: dict[str, Any] = made.json()
        # A real play, stopped: the API records `stopped`, which the worker delivers.
        started = api.post("/v1/plays", json={"playbook_id": "hello", "lead": {"phone": LEAD}})
        assert started.status_code == 201, started.text
        stopped = api.post(f"/v1/plays/{started.json()['id']}/stop")
        assert stopped.status_code == 200, stopped.text
    _settle(run_worker, receiver, 1)
    [first] = receiver.bodies("/hooks")
    assert first["activity_label"] == "stopped"

    _signed_in(browser, console, issued_key)
    browser.get(f"{console}/console/webhooks/{hook['id']}")
    wait_for(browser, "deliveries")
    [row] = _deliveries(browser)
    assert (row["status"], row["code"], row["body"]) == ("delivered", "200", "answer 200")
    # Its play is linked.
    link = browser.find_element(By.CSS_SELECTOR, f"#delivery-{row['id']} a")
    assert link.get_attribute("href") == f"{console}/console/plays/{started.json()['id']}"

    # Replay one: queued again, then sent again with the same event id.
    receiver.answer = lambda _r: 201
    browser.find_element(By.ID, f"replay-{row['id']}").click()
    wait_for(browser, "replayed")
    assert row["id"] in browser.find_element(By.ID, "replayed").text
    assert _deliveries(browser)[0]["status"].startswith("pending")
    _settle(run_worker, receiver, 2)
    again = receiver.bodies("/hooks")
    assert [body["id"] for body in again] == [first["id"], first["id"]]
    browser.get(f"{console}/console/webhooks/{hook['id']}")
    wait_for(browser, "deliveries")
    [row] = _deliveries(browser)
    assert (row["status"], row["code"], row["body"]) == ("delivered", "201", "answer 201")
    assert "1 replay)" in browser.find_element(By.ID, f"delivery-{row['id']}").text

    # A time range: a time the API can't read is refused at its field; then a real range.
    browser.find_element(By.ID, "replay-since").send_keys("yesterday")
    browser.find_element(By.ID, "replay-range").click()
    wait_for(browser, "replay-error")
    assert browser.find_element(By.ID, "replay-error").text.startswith("since: ")
    browser.find_element(By.ID, "replay-since").clear()
    browser.find_element(By.ID, "replay-since").send_keys("2000-01-01T00:00")
    browser.find_element(By.ID, "replay-range").click()
    wait_for(browser, "replay-result")
    assert browser.find_element(By.ID, "replay-result").text == "1 delivery queued."
    _settle(run_worker, receiver, 3)
    assert [body["id"] for body in receiver.bodies("/hooks")] == [first["id"]] * 3

    # Disabled, a replay is refused with the API's reason; enabled, it goes again.
    browser.get(f"{console}/console/webhooks/{hook['id']}")
    wait_for(browser, "toggle-enabled")
    browser.find_element(By.ID, "toggle-enabled").click()
    wait_text(browser, "#webhook-state", "disabled")
    browser.find_element(By.ID, f"replay-{row['id']}").click()
    wait_for(browser, "webhook-error")
    assert "disabled" in browser.find_element(By.ID, "webhook-error").text
    browser.find_element(By.ID, "toggle-enabled").click()
    wait_text(browser, "#webhook-state", "enabled")

    # Deleted, with its deliveries.
    browser.find_element(By.ID, "delete-webhook").click()
    wait_for(browser, "webhooks")
    assert hook["id"] not in browser.page_source
    with api_client(console, issued_key) as api:
        assert api.get(f"/v1/webhooks/{hook['id']}").status_code == 404


def test_a_forged_rotation_is_refused_and_another_accounts_webhook_is_a_404(
    browser: webdriver.Chrome,
    console: str,
    issued_key: accounts.IssuedKey,
    settings: Settings,
    receiver: WebhookEndpoint,
) -> None:
    _allow_private(settings, issued_key.key.account_id)
    with api_client(console, issued_key) as api:
        made = api.post("/v1/webhooks", json={"url": receiver.url + "/hooks"})
        assert made.status_code == 201, made.text
    hook = made.json()
    _signed_in(browser, console, issued_key)
    browser.get(f"{console}/console/webhooks/{hook['id']}")
    wait_for(browser, "rotate")
    form = browser.find_element(By.CSS_SELECTOR, "form[action$='/rotate-secret']")
    token = form.find_element(By.CSS_SELECTOR, "input[name=csrf]")
    tamper(browser, token)  # a token that differs from the issued one
    browser.find_element(By.ID, "rotate").click()
    wait_text(browser, "body", "403 Forbidden")
    assert "security token" in browser.find_element(By.TAG_NAME, "body").text
    with api_client(console, issued_key) as api:
        after = api.get(f"/v1/webhooks/{hook['id']}").json()
    assert after["previous_secret_expires_at"] is None  # not rotated

    # Another account's subscription: no page, no rotation, no deletion.
    cookie = browser.get_cookie(COOKIE)
    assert cookie is not None

    async def other() -> accounts.IssuedKey:
        engine = create_engine(settings.database)
        try:
            async with transaction(session_factory(engine)) as session:
                _account, issued = await accounts.create_account(session, "B Insurance")
                await set_private_allowed(session, issued.key.account_id, True)
        finally:
            await engine.dispose()
        return issued

    theirs_key = asyncio.run(other())
    with api_client(console, theirs_key) as api:
        theirs = api.post("/v1/webhooks", json={"url": receiver.url + "/b"}).json()
    browser.get(f"{console}/console/webhooks/{theirs['id']}")
    wait_for(browser, "not-found")
    assert receiver.url + "/b" not in browser.page_source
    browser.get(f"{console}/console/webhooks/{hook['id']}")
    wait_for(browser, "rotate")
    csrf = browser.find_element(By.CSS_SELECTOR, "input[name=csrf]").get_attribute("value")
    with httpx.Client(base_url=console, headers={"Cookie": f"{COOKIE}={cookie['value']}"}) as web:
        for action in ("rotate-secret", "delete", "test"):
            answer = web.post(f"/console/webhooks/{theirs['id']}/{action}", data={"csrf": csrf})
            assert answer.status_code == 404, action
            assert "whsec" not in answer.text
    with api_client(console, theirs_key) as api:
        still = api.get(f"/v1/webhooks/{theirs['id']}").json()
    assert still["previous_secret_expires_at"] is None
    assert receiver.bodies("/b") == []
