"""The console in a real browser: sign-in with an API key, the Compliance page (ledger search,
CSV export, the gate's answer), CSRF refusals and sign-out, against the app served on 127.0.0.1."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Iterator

import httpx
import pytest
import redis
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import accounts
from gateway.app import create_app
from gateway.console import web
from gateway.console.sessions import COOKIE, SESSION_PREFIX
from gateway.db import create_engine, session_factory, transaction
from gateway.settings import Settings
from tests.support.console import WAIT
from tests.support.console import sign_in as _sign_in
from tests.support.console import wait_for as _wait_for
from tests.support.servers import serve_in_thread

PHONE = "+14155550123"


@pytest.fixture
def console(settings: Settings, engine: AsyncEngine, browser: webdriver.Chrome) -> Iterator[str]:
    """The whole gateway under uvicorn (the `browser` fixture starts with no cookies); yields
    its base URL."""
    with serve_in_thread(create_app(settings)) as url:
        yield url


def _signed_in(browser: webdriver.Chrome, url: str, secret: str) -> str:
    """Sign in; the session cookie's value."""
    _sign_in(browser, url, secret)
    _wait_for(browser, "ledger")
    cookie = browser.get_cookie(COOKIE)
    assert cookie is not None
    return str(cookie["value"])


def _sessions_in_redis(settings: Settings) -> int:
    assert settings.redis_url is not None
    client = redis.Redis.from_url(settings.redis_url)
    try:
        return len(client.keys(SESSION_PREFIX + "*"))
    finally:
        client.close()


def test_sign_in_with_a_key_shows_the_compliance_page(
    browser: webdriver.Chrome, console: str, issued_key: accounts.IssuedKey
) -> None:
    value = _signed_in(browser, console, issued_key.secret)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Compliance"
    assert "Acme Lending" in browser.find_element(By.TAG_NAME, "header").text
    cookie = browser.get_cookie(COOKIE)
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["secure"] is False  # development settings; production sets Secure
    # The key's id, never its secret.
    assert value.startswith(issued_key.key.id + ".")
    assert issued_key.secret not in value
    # Every control has its label.
    for control in browser.find_elements(By.CSS_SELECTOR, "input:not([type=hidden]), select"):
        control_id = control.get_attribute("id")
        assert browser.find_elements(By.CSS_SELECTOR, f"label[for='{control_id}']"), control_id


def test_console_pages_send_a_content_security_policy(console: str) -> None:
    for path in ("/console/sign-in", "/console/static/console.css"):
        response = httpx.get(console + path)
        assert response.status_code == 200
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy
        assert "script-src 'self';" in policy
    page = httpx.get(console + "/console/sign-in").text
    # Scripts only from the gateway's own files, never inline: every script tag is empty.
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.DOTALL)
    assert scripts == [(' src="/console/static/live.js" defer', "")]
    assert httpx.get(console + "/console/static/live.js").status_code == 200
    assert "style=" not in page


def test_the_page_fits_a_360_pixel_screen(
    browser: webdriver.Chrome, console: str, issued_key: accounts.IssuedKey
) -> None:
    _signed_in(browser, console, issued_key.secret)
    size = browser.get_window_size()
    browser.set_window_size(360, 800)
    try:
        browser.refresh()
        _wait_for(browser, "ledger")
        width = browser.execute_script("return document.documentElement.clientWidth")
        scroll = browser.execute_script("return document.documentElement.scrollWidth")
        assert scroll <= width
    finally:
        browser.set_window_size(size["width"], size["height"])


def test_a_wrong_key_is_refused_with_a_clear_message(
    browser: webdriver.Chrome, console: str, issued_key: accounts.IssuedKey, settings: Settings
) -> None:
    _sign_in(browser, console, issued_key.secret + "x")
    _wait_for(browser, "error")
    assert "not valid" in browser.find_element(By.ID, "error").text
    assert browser.get_cookie(COOKIE) is None
    assert _sessions_in_redis(settings) == 0


def test_a_post_without_the_right_csrf_token_is_403_and_changes_nothing(
    browser: webdriver.Chrome, console: str, issued_key: accounts.IssuedKey, settings: Settings
) -> None:
    value = _signed_in(browser, console, issued_key.secret)
    headers = {"Cookie": f"{COOKIE}={value}"}
    with httpx.Client(base_url=console, headers=headers) as client:
        for path, data in (
            ("/console/sign-out", {"csrf": "0" * 64}),
            ("/console/sign-out", {}),
            ("/console/compliance/check", {"csrf": "wrong", "phone": PHONE}),
        ):
            refused = client.post(path, data=data)
            assert refused.status_code == 403, (path, refused.text)
            assert "set-cookie" not in refused.headers
        # Still signed in: the sign-out did not happen.
        page = client.get("/console/compliance")
        assert page.status_code == 200
        assert 'id="ledger"' in page.text
    assert _sessions_in_redis(settings) == 1
    # A sign-in posted with a forged token starts no session.
    forged = httpx.post(
        console + "/console/sign-in", data={"csrf": "0" * 64, "key": issued_key.secret}
    )
    assert forged.status_code == 403
    assert COOKIE not in forged.cookies
    assert _sessions_in_redis(settings) == 1


def test_a_manual_opt_out_shows_in_the_ledger_the_export_and_the_gate(
    browser: webdriver.Chrome, console: str, issued_key: accounts.IssuedKey
) -> None:
    created = httpx.post(
        console + "/v1/opt-outs",
        headers={"Authorization": f"Bearer {issued_key.secret}"},
        json={"phone": PHONE, "actor": "jane@acme.example", "text": "call me never"},
    )
    assert created.status_code == 201, created.text
    value = _signed_in(browser, console, issued_key.secret)

    browser.find_element(By.ID, "phone").send_keys("(415) 555-0123")
    browser.find_element(By.ID, "search").click()
    WebDriverWait(browser, WAIT).until(ec.url_contains("phone="))
    _wait_for(browser, "ledger")
    table = browser.find_element(By.ID, "ledger").text
    assert PHONE in table
    assert "jane@acme.example" in table
    assert browser.find_element(By.ID, "ledger-count").text.startswith("1 event")

    # The export link streams the API's CSV with the console session.
    href = browser.find_element(By.ID, "export").get_attribute("href")
    assert href is not None
    exported = httpx.get(href, headers={"Cookie": f"{COOKIE}={value}"})
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [row["phone"] for row in rows] == [PHONE]
    # Without the session there is no export.
    anonymous = httpx.get(href, follow_redirects=False)
    assert anonymous.status_code == 303

    browser.find_element(By.ID, "check-phone").send_keys(PHONE)
    browser.find_element(By.ID, "check").click()
    _wait_for(browser, "decision")
    assert browser.find_element(By.ID, "decision-action").text == "blocked"
    assert browser.find_element(By.ID, "decision-rule").text


def test_another_number_may_be_contacted_or_waits_for_its_window(
    browser: webdriver.Chrome, console: str, issued_key: accounts.IssuedKey
) -> None:
    _signed_in(browser, console, issued_key.secret)
    browser.find_element(By.ID, "check-phone").send_keys("+14155550199")
    browser.find_element(By.ID, "check").click()
    _wait_for(browser, "decision")
    # Allowed or deferred to the lead's calling window, depending on the hour; never blocked.
    assert browser.find_element(By.ID, "decision-action").text in {"allowed", "deferred"}
    # The zones the gate placed the number in (a 415 number: California).
    assert "America/Los_Angeles" in browser.find_element(By.ID, "decision-zones").text


def test_sign_out_makes_the_old_cookie_useless(
    browser: webdriver.Chrome, console: str, issued_key: accounts.IssuedKey
) -> None:
    value = _signed_in(browser, console, issued_key.secret)
    browser.find_element(By.ID, "sign-out").click()
    _wait_for(browser, "key")
    assert browser.get_cookie(COOKIE) is None
    replayed = httpx.get(
        console + "/console/compliance",
        headers={"Cookie": f"{COOKIE}={value}"},
        follow_redirects=False,
    )
    assert replayed.status_code == 303
    assert replayed.headers["location"] == "/console/sign-in"


def test_a_revoked_key_ends_its_console_session(
    browser: webdriver.Chrome, console: str, issued_key: accounts.IssuedKey, settings: Settings
) -> None:
    value = _signed_in(browser, console, issued_key.secret)

    async def revoke() -> None:
        # Its own engine in its own loop: this test is synchronous, the server runs in a thread.
        engine = create_engine(settings.database)
        try:
            async with transaction(session_factory(engine)) as session:
                await accounts.revoke_key(session, issued_key.key.id)
        finally:
            await engine.dispose()

    asyncio.run(revoke())
    browser.refresh()
    _wait_for(browser, "key")  # back at the sign-in form
    replayed = httpx.get(
        console + "/console/compliance",
        headers={"Cookie": f"{COOKIE}={value}"},
        follow_redirects=False,
    )
    assert replayed.status_code == 303


def test_times_are_shown_in_utc_to_the_second_and_keep_the_exact_value() -> None:
    shown = str(web.when("2026-12-02T10:03:35.5-08:00"))
    assert ">2026-12-02 18:03:35 UTC</time>" in shown
    assert 'datetime="2026-12-02T18:03:35.500000Z"' in shown
    assert str(web.when(None)) == ""
    # Markup escaping: a value is never HTML (and a non-time is refused loudly, not shown raw).
    with pytest.raises(ValueError):
        web.when("<script>")
