"""The console's Conversations section in a real browser: the plays list (filtered, the inbox),
one play as a conversation (its text as a bubble with its status, its log), and another
account's play as a 404, against the app served on 127.0.0.1 with a burst worker's first text."""

from __future__ import annotations

import asyncio
import re
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
from gateway.models import KeyScope
from gateway.settings import Settings
from tests.conftest import RunWorker
from tests.support.console import (
    WAIT,
    api_client,
    click_to_new_page,
    sign_in,
    wait_for,
    wait_text,
)
from tests.support.playbooks import PLAYBOOK_YAML as PLAYBOOK
from tests.support.servers import serve_in_thread

LEAD = "+14155550123"


@pytest.fixture
def console(settings: Settings, engine: AsyncEngine, browser: webdriver.Chrome) -> Iterator[str]:
    with serve_in_thread(create_app(settings)) as url:
        # The built-in sandbox (Twilio's stand-in) calls the gateway back here, as `gateway run`.
        settings.public_base_url = url
        yield url


def _start_play(url: str, key: accounts.IssuedKey, run_worker: RunWorker) -> dict[str, Any]:
    """Publish a playbook, start a play on it, run the worker until its first text exists;
    the play as `GET /v1/plays/{id}` shows it then."""
    with api_client(url, key) as api:
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
    with api_client(console, issued_key) as api:
        log = api.get(f"/v1/plays/{play['id']}/log").json()["data"]
    kinds = [k.text for k in browser.find_elements(By.CSS_SELECTOR, "#log .kind")]
    assert kinds == [entry["kind"] for entry in log]
    assert "message" in kinds

    # No inline script or style on the page (live.js is a file); it fits a 360 px screen.
    assert "<script>" not in browser.page_source
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


# The actions on one play, the list's other filters, live updates.

OUR_NUMBER = "+14155550100"


def _signed_in_client(url: str, browser: webdriver.Chrome) -> httpx.Client:
    """An HTTP client with the browser's session cookie (for what a page can't be made to do:
    a request with no token, a 422 the page's controls can't produce)."""
    cookie = browser.get_cookie(COOKIE)
    assert cookie is not None
    return httpx.Client(base_url=url, headers={"Cookie": f"{COOKIE}={cookie['value']}"})


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match is not None
    return match.group(1)


def _add_rep(url: str, key: accounts.IssuedKey, name: str, phone: str) -> str:
    with api_client(url, key) as api:
        created = api.post("/v1/reps", json={"name": name, "phone": phone})
        assert created.status_code == 201, created.text
        rep_id: str = created.json()["id"]
    return rep_id


def _play(url: str, key: accounts.IssuedKey, play_id: str) -> dict[str, Any]:
    with api_client(url, key) as api:
        shown = api.get(f"/v1/plays/{play_id}")
        assert shown.status_code == 200, shown.text
        play: dict[str, Any] = shown.json()
    return play


def _open_play(browser: webdriver.Chrome, url: str, play_id: str) -> None:
    browser.get(f"{url}/console/plays/{play_id}")
    wait_for(browser, "messages")


def _click_and_wait_notice(browser: webdriver.Chrome, button_id: str) -> str:
    """Click an action's button; the redirect's notice, once the new page has it."""
    click_to_new_page(browser, browser.find_element(By.ID, button_id))
    WebDriverWait(browser, WAIT).until(
        ec.any_of(
            ec.presence_of_element_located((By.ID, "play-notice")),
            ec.presence_of_element_located((By.ID, "play-error")),
        )
    )
    errors = browser.find_elements(By.ID, "play-error")
    assert not errors, errors[0].text
    assert "notice=" in browser.current_url
    return str(browser.find_element(By.ID, "play-notice").text)


def test_take_over_resume_assign_unassign_and_stop_by_clicking(
    browser: webdriver.Chrome,
    console: str,
    issued_key: accounts.IssuedKey,
    run_worker: RunWorker,
) -> None:
    play = _start_play(console, issued_key, run_worker)
    rep_id = _add_rep(console, issued_key, "Dana Reyes", "+14155550109")
    sign_in(browser, console, issued_key.secret)
    wait_for(browser, "nav-plays")
    _open_play(browser, console, play["id"])
    # Every control has its label.
    for control in browser.find_elements(
        By.CSS_SELECTOR, "input:not([type=hidden]), select, textarea"
    ):
        control_id = control.get_attribute("id")
        assert browser.find_elements(By.CSS_SELECTOR, f"label[for='{control_id}']"), control_id
    assert not browser.find_elements(By.ID, "resume")  # nobody has taken it over yet

    # Take over: a person's text, then its bubble with the sender; the play is now a person's.
    browser.find_element(By.ID, "reply-body").send_keys("Dana here. Does 3pm work for a call?")
    browser.find_element(By.ID, "reply-sender").send_keys("Dana")
    assert "yours" in _click_and_wait_notice(browser, "reply")
    bubbles = browser.find_elements(By.CSS_SELECTOR, "#messages .bubble.out")
    assert bubbles[-1].find_element(By.CSS_SELECTOR, ".body").text == (
        "Dana here. Does 3pm work for a call?"
    )
    assert bubbles[-1].find_element(By.CSS_SELECTOR, ".sent-by").text == "Dana"
    assert browser.find_elements(By.ID, "play-human")
    after_reply = _play(console, issued_key, play["id"])
    assert after_reply["awaiting_human_since"] is not None
    assert after_reply["messages"][-1]["sent_by"] == "Dana"

    # Resume at a named step: back with the playbook, out of the inbox.
    Select(browser.find_element(By.ID, "resume-step")).select_by_value("hi")
    browser.find_element(By.ID, "resume-by").send_keys("Dana")
    assert "back with its playbook" in _click_and_wait_notice(browser, "resume")
    assert not browser.find_elements(By.ID, "play-human")
    assert _play(console, issued_key, play["id"])["awaiting_human_since"] is None

    # Assign the rep, then take the lead back.
    Select(browser.find_element(By.ID, "assign-rep")).select_by_value(rep_id)
    assert _click_and_wait_notice(browser, "assign") == "The rep is assigned."
    assert browser.find_element(By.ID, "play-rep").text == "Dana Reyes"
    assert _play(console, issued_key, play["id"])["rep_id"] == rep_id
    assert _click_and_wait_notice(browser, "unassign") == "The rep is unassigned."
    assert browser.find_element(By.ID, "play-rep").text == "none"
    assert _play(console, issued_key, play["id"])["rep_id"] is None

    # Stop: the play ends and its actions are gone.
    assert _click_and_wait_notice(browser, "stop") == "The play is stopped."
    assert browser.find_element(By.ID, "play-state").text == "stopped"
    assert not browser.find_elements(By.ID, "play-actions")
    assert _play(console, issued_key, play["id"])["state"] == "stopped"


def test_the_apis_refusals_are_shown_on_the_page(
    browser: webdriver.Chrome,
    console: str,
    issued_key: accounts.IssuedKey,
    run_worker: RunWorker,
) -> None:
    play = _start_play(console, issued_key, run_worker)
    sign_in(browser, console, issued_key.secret)
    wait_for(browser, "nav-plays")
    _open_play(browser, console, play["id"])
    # Stopped elsewhere while the page is open: the page's Stop is the API's 409, shown.
    with api_client(console, issued_key) as api:
        assert api.post(f"/v1/plays/{play['id']}/stop").status_code == 200
    browser.find_element(By.ID, "stop").click()
    wait_for(browser, "play-error")
    assert "the play is stopped, not running" in browser.find_element(By.ID, "play-error").text

    # A 422 (a step the playbook lacks) and a 409 (not waiting for a person), with the status
    # the API gave, from the form the page would post, never a 500.
    second = _start_play_again(console, issued_key)
    with _signed_in_client(console, browser) as web:
        token = _csrf(web.get(f"/console/plays/{second}").text)
        taken = web.post(
            f"/console/plays/{second}/messages", data={"csrf": token, "body": "Hi, Dana here"}
        )
        assert taken.status_code == 303, taken.text
        bad_step = web.post(f"/console/plays/{second}/resume", data={"csrf": token, "step": "hii"})
        assert bad_step.status_code == 422
        assert "is not a step of hello version 1 (did you mean &#39;hi&#39;?)" in bad_step.text
        empty = web.post(f"/console/plays/{second}/messages", data={"csrf": token, "body": ""})
        assert empty.status_code == 422 and "body" in empty.text
        no_rep = web.post(
            f"/console/plays/{second}/assign", data={"csrf": token, "rep_id": "rep_x"}
        )
        assert no_rep.status_code == 404 and "no such rep" in no_rep.text
        resumed = web.post(f"/console/plays/{second}/resume", data={"csrf": token, "step": "hi"})
        assert resumed.status_code == 303
        again = web.post(f"/console/plays/{second}/resume", data={"csrf": token, "step": "hi"})
        assert again.status_code == 409 and "not waiting for a person" in again.text
        # Another account's play, or none: the 404 page, whatever the action.
        assert web.post("/console/plays/play_nope/stop", data={"csrf": token}).status_code == 404


def _start_play_again(url: str, key: accounts.IssuedKey) -> str:
    """A second running play of the published playbook, for another lead."""
    with api_client(url, key) as api:
        body = {"playbook_id": "hello", "lead": {"phone": "+14155550124", "first_name": "Bo"}}
        created = api.post("/v1/plays", json=body)
        assert created.status_code == 201, created.text
        play_id: str = created.json()["id"]
    return play_id


def test_a_tampered_token_is_a_403_and_changes_nothing(
    browser: webdriver.Chrome,
    console: str,
    issued_key: accounts.IssuedKey,
    run_worker: RunWorker,
) -> None:
    play = _start_play(console, issued_key, run_worker)
    sign_in(browser, console, issued_key.secret)
    wait_for(browser, "nav-plays")
    _open_play(browser, console, play["id"])
    # Another site's form, or a tampered page: the Stop form's token is not this session's.
    browser.execute_script(
        "document.querySelector('form[action$=\"/stop\"] input[name=csrf]').value = 'forged'"
    )
    browser.find_element(By.ID, "stop").click()
    WebDriverWait(browser, WAIT).until(ec.url_contains("/stop"))
    assert "security token is missing or wrong" in browser.find_element(By.TAG_NAME, "body").text
    assert _play(console, issued_key, play["id"])["state"] == "running"
    with _signed_in_client(console, browser) as web:
        for action, data in (
            ("messages", {"body": "forged"}),
            ("resume", {"step": "hi"}),
            ("party-line", {}),
            ("unassign", {}),
        ):
            refused = web.post(f"/console/plays/{play['id']}/{action}", data=data)
            assert refused.status_code == 403, action
    after = _play(console, issued_key, play["id"])
    assert after["state"] == "running" and after["messages"] == play["messages"]
    assert after["awaiting_human_since"] is None


def test_a_read_key_sees_the_play_but_its_actions_are_403(
    browser: webdriver.Chrome,
    console: str,
    issued_key: accounts.IssuedKey,
    settings: Settings,
    run_worker: RunWorker,
) -> None:
    play = _start_play(console, issued_key, run_worker)
    read_key = _key_of_scope(settings, issued_key, KeyScope.READ)
    sign_in(browser, console, read_key.secret)
    wait_for(browser, "nav-plays")
    _open_play(browser, console, play["id"])
    with _signed_in_client(console, browser) as web:
        page = web.get(f"/console/plays/{play['id']}")
        assert page.status_code == 200
        token = _csrf(page.text)
        assert web.get(f"/console/plays/{play['id']}/entries").status_code == 200
        for action, data in (
            ("stop", {}),
            ("messages", {"body": "Hi"}),
            ("resume", {"step": "hi"}),
            ("party-line", {}),
            ("assign", {"rep_id": "rep_x"}),
            ("unassign", {}),
        ):
            refused = web.post(
                f"/console/plays/{play['id']}/{action}", data={"csrf": token, **data}
            )
            assert refused.status_code == 403 and "scope is read" in refused.text, action
    assert _play(console, issued_key, play["id"])["state"] == "running"


def _key_of_scope(
    settings: Settings, issued: accounts.IssuedKey, scope: KeyScope
) -> accounts.IssuedKey:
    async def create() -> accounts.IssuedKey:
        engine = create_engine(settings.database)
        try:
            async with transaction(session_factory(engine)) as session:
                return await accounts.create_key(session, issued.key.account_id, scope.value, scope)
        finally:
            await engine.dispose()

    return asyncio.run(create())


def test_a_new_text_appears_on_the_open_page_without_a_reload(
    browser: webdriver.Chrome,
    console: str,
    issued_key: accounts.IssuedKey,
    settings: Settings,
    run_worker: RunWorker,
) -> None:
    with api_client(console, issued_key) as api:
        registered = api.post("/v1/numbers", json={"number": OUR_NUMBER})
        assert registered.status_code == 201, registered.text
    play = _start_play(console, issued_key, run_worker)
    sign_in(browser, console, issued_key.secret)
    wait_for(browser, "nav-plays")
    _open_play(browser, console, play["id"])
    live = browser.find_element(By.ID, "live")
    assert live.get_attribute("data-live-src") == f"/console/plays/{play['id']}/entries"
    # A mark on this very document: a reload would lose it.
    browser.execute_script("document.documentElement.dataset.mark = 'same-page'")
    assert not browser.find_elements(By.CSS_SELECTOR, "#messages .bubble.in")

    # The lead texts back through the sandbox (as `gateway run`'s dev phone does), the gateway
    # hears it, the worker records it in the play.
    sandbox = httpx.Client(
        base_url=f"{console}/sandbox/_sandbox", auth=(settings.twilio_sid, settings.twilio_token)
    )
    with sandbox:
        sent = sandbox.post("/sms", json={"from": LEAD, "to": OUR_NUMBER, "body": "yes please"})
        assert sent.status_code == 200, sent.text
        assert sandbox.post("/settle", json={}).status_code == 200
    asyncio.run(run_worker())
    assert _play(console, issued_key, play["id"])["state"] == "has_outcome"

    wait_text(browser, "#messages .bubble.in", "yes please")
    wait_text(browser, "#play-state", "has outcome")
    assert browser.execute_script("return document.documentElement.dataset.mark") == "same-page"
    assert browser.find_element(By.ID, "live").get_attribute("data-live-error") is None
    # The fragment is the page's own part, nothing more.
    with _signed_in_client(console, browser) as web:
        fragment = web.get(f"/console/plays/{play['id']}/entries")
        assert fragment.status_code == 200 and "yes please" in fragment.text
        assert "<html" not in fragment.text and 'id="messages"' in fragment.text
        assert web.get("/console/plays/play_nope/entries").status_code == 404
    with httpx.Client(base_url=console) as signed_out:
        assert signed_out.get(f"/console/plays/{play['id']}/entries").status_code == 303


def test_the_list_filters_by_rep_source_and_day(
    browser: webdriver.Chrome,
    console: str,
    issued_key: accounts.IssuedKey,
    run_worker: RunWorker,
) -> None:
    play = _start_play(console, issued_key, run_worker)
    rep_id = _add_rep(console, issued_key, "Dana Reyes", "+14155550109")
    with api_client(console, issued_key) as api:
        body = {
            "playbook_id": "hello",
            "lead": {
                "phone": "+14155550124",
                "first_name": "Bo",
                "originators": [{"origin": "EverQuote", "key": "eq-1"}],
            },
        }
        created = api.post("/v1/plays", json=body)
        assert created.status_code == 201, created.text
        quoted = created.json()
        assigned = api.post(f"/v1/leads/{play['lead_id']}/assign", json={"rep_id": rep_id})
        assert assigned.status_code == 200, assigned.text
    sign_in(browser, console, issued_key.secret)
    wait_for(browser, "nav-plays")
    browser.get(f"{console}/console/plays")
    wait_for(browser, "plays")
    assert _play_ids(browser) == [play["id"], quoted["id"]]

    Select(browser.find_element(By.ID, "rep_id")).select_by_value(rep_id)
    browser.find_element(By.ID, "filter").click()
    _wait_for_url(browser, "rep_id=")
    assert _play_ids(browser) == [play["id"]]
    assert browser.find_element(By.CSS_SELECTOR, f"#row-{play['id']} .rep").text == "Dana Reyes"

    Select(browser.find_element(By.ID, "rep_id")).select_by_value("")
    browser.find_element(By.ID, "source").send_keys("EverQuote")
    browser.find_element(By.ID, "filter").click()
    _wait_for_url(browser, "source=EverQuote")
    assert _play_ids(browser) == [quoted["id"]]

    # Days (UTC): today holds both; a range that ends before today, none; a backwards one is
    # the API's 422, named by the form's field.
    today = quoted["created_at"][:10]
    browser.get(f"{console}/console/plays?from={today}&to={today}")
    wait_for(browser, "plays")
    assert _play_ids(browser) == [play["id"], quoted["id"]]
    assert browser.find_element(By.ID, "from").get_attribute("value") == today
    browser.get(f"{console}/console/plays?to=2000-01-01")
    wait_for(browser, "plays")
    assert _play_ids(browser) == []
    browser.get(f"{console}/console/plays?from={today}&to=2000-01-01")
    wait_for(browser, "plays-error")
    assert "to: must be after" in browser.find_element(By.ID, "plays-error").text
    browser.get(f"{console}/console/plays?from=someday")
    wait_for(browser, "plays-error")
    assert "from: not a day" in browser.find_element(By.ID, "plays-error").text
    # The list refreshes itself from its rows fragment, with the page's filters.
    browser.get(f"{console}/console/plays?source=EverQuote")
    wait_for(browser, "plays")
    rows_url = browser.find_element(By.ID, "plays-live").get_attribute("data-live-src")
    assert rows_url == "/console/plays/rows?source=EverQuote"
    WebDriverWait(browser, WAIT).until(
        lambda b: b.find_element(By.ID, "plays-live").get_attribute("data-live-at")
    )
    assert _play_ids(browser) == [quoted["id"]]


def test_start_a_party_line_by_clicking(
    browser: webdriver.Chrome,
    console: str,
    issued_key: accounts.IssuedKey,
    run_worker: RunWorker,
) -> None:
    play = _start_play(console, issued_key, run_worker)
    _add_rep(console, issued_key, "Dana Reyes", "+14155550109")
    sign_in(browser, console, issued_key.secret)
    wait_for(browser, "nav-plays")
    _open_play(browser, console, play["id"])
    # Without a number to call from: the API's refusal, on the page.
    browser.find_element(By.ID, "party-line").click()
    wait_for(browser, "play-error")
    assert "no number to call from" in browser.find_element(By.ID, "play-error").text
    with api_client(console, issued_key) as api:
        registered = api.post("/v1/numbers", json={"number": OUR_NUMBER})
        assert registered.status_code == 201, registered.text
    assert "party line is starting" in _click_and_wait_notice(browser, "party-line")
    with api_client(console, issued_key) as api:
        [started] = api.get(f"/v1/plays/{play['id']}/party-lines").json()["data"]
    assert browser.find_elements(By.ID, f"party-line-{started['id']}")
    # A second one while the first is live: the API's 409, on the page.
    browser.find_element(By.ID, "party-line").click()
    wait_for(browser, "play-error")
    assert "party line" in browser.find_element(By.ID, "play-error").text
    with api_client(console, issued_key) as api:
        assert len(api.get(f"/v1/plays/{play['id']}/party-lines").json()["data"]) == 1


EMAIL_PLAYBOOK = """\
name: Quote by email
email:
  from: "Quotes <quotes@example.com>"
steps:
  - id: quote
    kind: send
    channel: email
    subject: "Your quote, {lead.first_name|there}"
    body: "Hi {lead.first_name|there}, your quote is ready."
"""


def test_the_play_page_shows_the_plays_emails(
    browser: webdriver.Chrome,
    console: str,
    issued_key: accounts.IssuedKey,
    run_worker: RunWorker,
) -> None:
    with api_client(console, issued_key) as api:
        published = api.put(
            "/v1/playbooks/quote-email",
            content=EMAIL_PLAYBOOK,
            headers={"Content-Type": "application/yaml"},
        )
        assert published.status_code == 201, published.text
        lead = {"phone": LEAD, "first_name": "Ann", "email": "ann@example.com"}
        created = api.post("/v1/plays", json={"playbook_id": "quote-email", "lead": lead})
        assert created.status_code == 201, created.text
        play_id = created.json()["id"]
        asyncio.run(run_worker())
        [email] = api.get("/v1/emails", params={"play_id": play_id}).json()["data"]
    sign_in(browser, console, issued_key.secret)
    wait_for(browser, "nav-plays")
    browser.get(f"{console}/console/plays/{play_id}")
    wait_for(browser, "emails")
    shown = browser.find_element(By.ID, f"email-{email['id']}")
    assert shown.find_element(By.CSS_SELECTOR, ".email-subject").text == "Your quote, Ann"
    assert shown.find_element(By.CSS_SELECTOR, ".email-status").text == email["status"]
    assert "ann@example.com" in shown.text
