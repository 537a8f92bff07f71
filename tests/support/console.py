"""What the console's page tests share (a plugin the root conftest registers): the app served
for a browser (`console` fixture), an API client with the account's key, waiting for an
element, signing in with an API key."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import accounts
from gateway.app import create_app
from gateway.settings import Settings
from tests.support.servers import QuickStopServer, serve_in_thread

WAIT = 20  # seconds: a bound for a page to arrive on a loaded machine, not a timing claim


def wait_for(browser: webdriver.Chrome, element_id: str) -> None:
    WebDriverWait(browser, WAIT).until(ec.presence_of_element_located((By.ID, element_id)))


def wait_text(browser: webdriver.Chrome, css: str, text: str) -> None:
    """Until the first element matching `css` holds `text`. Read in one script call: while a
    form's answer replaces the page, an element found a moment ago may already be gone
    ("Node with given id does not belong to the document"), so a failed read only retries."""

    def holds(b: webdriver.Chrome) -> bool:
        found = b.execute_script(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null",
            css,
        )
        return isinstance(found, str) and text in found

    WebDriverWait(browser, WAIT, ignored_exceptions=(WebDriverException,)).until(holds)


def click_to_new_page(browser: webdriver.Chrome, element: WebElement) -> None:
    """Click `element` and wait until another document has replaced this one. The old page is
    marked in its own window object, which a navigation discards; the mark is read by a script,
    not by asking an element of the old page whether it is stale, which Chromium can answer
    with "Node with given id does not belong to the document" while the page is being
    replaced (seen once in CI), an error selenium's `staleness_of` does not expect."""
    browser.execute_script("window.__gatewayOldPage = true")
    element.click()

    def replaced(b: webdriver.Chrome) -> bool:
        return b.execute_script("return window.__gatewayOldPage !== true") is True

    WebDriverWait(browser, WAIT, ignored_exceptions=(WebDriverException,)).until(replaced)


def tamper(browser: webdriver.Chrome, field: WebElement) -> None:
    """Change the first character of a form field (a CSRF token) to a different one."""
    browser.execute_script(
        "const v = arguments[0].value;"
        "arguments[0].value = (v[0] === 'A' ? 'B' : 'A') + v.slice(1);",
        field,
    )


def sign_in(browser: webdriver.Chrome, url: str, secret: str) -> None:
    browser.get(url + "/console/")
    wait_for(browser, "key")
    # By keyboard: type the key and press Enter in its field.
    browser.find_element(By.ID, "key").send_keys(secret + Keys.ENTER)


@pytest.fixture
def console(settings: Settings, engine: AsyncEngine, browser: webdriver.Chrome) -> Iterator[str]:
    """The app served on a free port of 127.0.0.1 (its database and Redis the test's), a
    browser ready for it; the URL."""
    with serve_in_thread(create_app(settings)) as url:
        yield url


@pytest.fixture
def gateway_run(
    settings: Settings, engine: AsyncEngine, browser: webdriver.Chrome
) -> Iterator[str]:
    """The app with its worker in the same process (as `gateway run` runs them), on a free
    port of 127.0.0.1, with the built-in sandbox: what the dev phone needs. The URL."""
    settings.sms_rate_limits = False  # they wait by the wall clock; nothing here is about them
    assert settings.uses_sandbox and settings.twilio_api_url is None
    # The worker builds its Twilio client (the sandbox's URL) as it starts: the public URL must
    # be known before, so the socket is bound first and the server takes it.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings.public_base_url = url
    config = uvicorn.Config(
        create_app(settings, run_worker=True), log_level="warning", timeout_graceful_shutdown=1
    )
    server = QuickStopServer(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        WebDriverWait(browser, WAIT).until(lambda _b: server.started or not thread.is_alive())
        assert server.started
        yield url
    finally:
        server.stop()
        thread.join(30)
        sock.close()


def api_client(url: str, key: accounts.IssuedKey) -> httpx.Client:
    """An HTTP client for the served app's API with the account's key."""
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key.secret}"})
