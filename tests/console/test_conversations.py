"""The console's Conversations section in a real browser: the plays list (filtered, the inbox),
one play as a conversation (its text as a bubble with its status, its log), and another
account's play as a 404, against the app served on 127.0.0.1 with a burst worker's first text."""

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
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import accounts
from gateway.app import create_app
from gateway.console.sessions import COOKIE
from gateway.db import create_engine, session_factory, transaction
from gateway.settings import Settings
from tests.conftest import RunWorker
from tests.support.console import WAIT, sign_in, wait_for
from tests.support.servers import serve_in_thread

LEAD = "+14155550123"
PLAYBOOK = """\
name: Hello
activities:
  outcomes: [qualified]
steps:
  - id: hi
    kind: ask
    text: "Hi {lead.first_name|there}, still interested? Reply YES"
    choices:
      - keywords: [yes, yep]
        outcome: qualified
"""


@pytest.fixture
def console(settings: Settings, engine: AsyncEngine, browser: webdriver.Chrome) -> Iterator[str]:
    with serve_in_thread(create_app(settings)) as url:
        yield url


def _api(url: str, key: accounts.IssuedKey) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key.secret}"})


def _start_play(url: str, key: accounts.IssuedKey, run_worker: RunWorker) -> dict[str, Any]:
    """Publish a playbook, start a play on it, run the worker until its first text exists;
    the play as `GET /v1/plays/{id}` shows it then."""
    with _api(url, key) as api:
        published = api.put(
            "/v1/playbooks/hello", content=PLAYBOOK, headers={"Content-Type": "application/yaml"}
        )
        assert published.status_code == 201, published.text
        body = {"playbook_id": "hello", "lead": {"phone": LEAD, "first_name": "Ann"}}
        created = api.post("/v1/plays", json=body)
        assert created.status_code == 201, created.text
        asyncio.run(run_worker())
        detail = api.get(f"/v1/plays/{created.json()['id']}")
        assert detail.status_code == 200, detail.text
        play: dict[str, Any] = detail.json()
    assert play["messages"], play  # the worker wrote its first text
    return play


def _wait_for_url(browser: webdriver.Chrome, fragment: str) -> None:
    """Until the new page, with `fragment` in its address, has its list (the old page's
    elements would otherwise answer first)."""
    WebDriverWait(browser, WAIT).until(ec.url_contains(fragment))
    wait_for(browser, "plays-count")


def _play_ids(browser: webdriver.Chrome) -> list[str]:
    links = browser.find_elements(By.CSS_SELECTOR, "#plays a.play-link")
    return [str(link.get_attribute("href")).rsplit("/", 1)[-1] for link in links]


def test_the_plays_list_filters_and_links_to_the_conversation(
    browser: webdriver.Chrome,
    console: str,
    issued_key: accounts.IssuedKey,
    run_worker: RunWorker,
) -> None:
    play = _start_play(console, issued_key, run_worker)
    sign_in(browser, console, issued_key.secret)
    wait_for(browser, "nav-plays")
    browser.find_element(By.ID, "nav-plays").click()
    wait_for(browser, "plays")
    assert _play_ids(browser) == [play["id"]]
    assert LEAD in browser.find_element(By.ID, "plays").text
    # Every control has its label.
    for control in browser.find_elements(By.CSS_SELECTOR, "input:not([type=hidden]), select"):
        control_id = control.get_attribute("id")
        assert browser.find_elements(By.CSS_SELECTOR, f"label[for='{control_id}']"), control_id

    # Another state hides it; its own state shows it again.
    Select(browser.find_element(By.ID, "state")).select_by_value("stopped")
    browser.find_element(By.ID, "filter").click()
    _wait_for_url(browser, "state=stopped")
    assert _play_ids(browser) == []
    Select(browser.find_element(By.ID, "state")).select_by_value("running")
    browser.find_element(By.ID, "playbook_id").send_keys("hello")
    browser.find_element(By.ID, "filter").click()
    _wait_for_url(browser, "state=running")
    assert _play_ids(browser) == [play["id"]]

    # The inbox: nobody has taken the conversation over, so it is not there.
    browser.find_element(By.ID, "nav-inbox").click()
    _wait_for_url(browser, "awaiting=human")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Inbox"
    assert _play_ids(browser) == []


def test_the_play_page_shows_the_text_its_status_and_the_log(
    browser: webdriver.Chrome,
    console: str,
    issued_key: accounts.IssuedKey,
    run_worker: RunWorker,
) -> None:
    play = _start_play(console, issued_key, run_worker)
    [text] = play["messages"]
    sign_in(browser, console, issued_key.secret)
    wait_for(browser, "nav-plays")
    browser.get(f"{console}/console/plays")
    wait_for(browser, "plays")
    browser.find_element(By.CSS_SELECTOR, "#plays a.play-link").click()
    wait_for(browser, "messages")

    bubble = browser.find_element(By.ID, f"message-{text['id']}")
    assert "bubble" in str(bubble.get_attribute("class")).split()
    assert "out" in str(bubble.get_attribute("class")).split()
    assert bubble.find_element(By.CSS_SELECTOR, ".body").text == text["body"]
    assert bubble.find_element(By.CSS_SELECTOR, ".status").text == text["status"]
    assert text["body"].startswith("Hi Ann")
    assert browser.find_element(By.ID, "play-state").text == "running"
    assert LEAD in browser.find_element(By.ID, "play-lead").text

    # The log, as `GET /v1/plays/{id}/log` has it, in its order.
    with _api(console, issued_key) as api:
        log = api.get(f"/v1/plays/{play['id']}/log").json()["data"]
    kinds = [k.text for k in browser.find_elements(By.CSS_SELECTOR, "#log .kind")]
    assert kinds == [entry["kind"] for entry in log]
    assert "message" in kinds

    # No inline script or style on the page; it fits a 360 px screen.
    assert "<script" not in browser.page_source
    assert "style=" not in browser.page_source
    size = browser.get_window_size()
    browser.set_window_size(360, 800)
    try:
        browser.refresh()
        wait_for(browser, "messages")
        width = browser.execute_script("return document.documentElement.clientWidth")
        scroll = browser.execute_script("return document.documentElement.scrollWidth")
        assert scroll <= width
        browser.get(f"{console}/console/plays")
        wait_for(browser, "plays")
        width = browser.execute_script("return document.documentElement.clientWidth")
        scroll = browser.execute_script("return document.documentElement.scrollWidth")
        assert scroll <= width
    finally:
        browser.set_window_size(size["width"], size["height"])


def _new_account(settings: Settings, name: str) -> accounts.IssuedKey:
    async def create() -> accounts.IssuedKey:
        # Its own engine in its own loop: the test is synchronous, the server runs in a thread.
        engine = create_engine(settings.database)
        try:
            async with transaction(session_factory(engine)) as session:
                _account, issued = await accounts.create_account(session, name)
        finally:
            await engine.dispose()
        return issued

    return asyncio.run(create())


def test_another_accounts_play_is_a_404_page(
    browser: webdriver.Chrome,
    console: str,
    issued_key: accounts.IssuedKey,
    settings: Settings,
    run_worker: RunWorker,
) -> None:
    play = _start_play(console, _new_account(settings, "B Insurance"), run_worker)
    sign_in(browser, console, issued_key.secret)
    wait_for(browser, "nav-plays")
    browser.get(f"{console}/console/plays/{play['id']}")
    wait_for(browser, "not-found")
    assert play["messages"][0]["body"] not in browser.page_source
    cookie = browser.get_cookie(COOKIE)
    assert cookie is not None
    with httpx.Client(base_url=console, headers={"Cookie": f"{COOKIE}={cookie['value']}"}) as web:
        assert web.get(f"/console/plays/{play['id']}").status_code == 404
        assert web.get("/console/plays/play_nope").status_code == 404
        listed = web.get("/console/plays")
        assert listed.status_code == 200
        assert play["id"] not in listed.text
