"""The console's Playbooks and Source rules sections in a real browser, against the app served on
127.0.0.1: a publish the validator refuses (its error under its line, nothing published), a
publish that works, a clone, a delete; a source rule created, edited, cloned and deleted; a
forged CSRF token refused. What each click did is read back through the API."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from gateway import accounts
from gateway.console.sessions import COOKIE
from gateway.db import create_engine, session_factory, transaction
from gateway.settings import Settings
from tests.support.console import WAIT, sign_in, wait_for
from tests.support.playbooks import PLAYBOOK_YAML as PLAYBOOK

# Line 6 names a step kind that doesn't exist.
BROKEN = PLAYBOOK.replace("kind: ask", "kind: aks")
SECOND = PLAYBOOK.replace("name: Hello", "name: Hello again")


@pytest.fixture
def api(console: str, issued_key: accounts.IssuedKey) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {issued_key.secret}"}
    with httpx.Client(base_url=console, headers=headers) as client:
        yield client


def _publish(api: httpx.Client, playbook_id: str, text: str = PLAYBOOK) -> None:
    published = api.put(
        f"/v1/playbooks/{playbook_id}", content=text, headers={"Content-Type": "application/yaml"}
    )
    assert published.status_code == 201, published.text


def _rep(api: httpx.Client, name: str, phone: str) -> str:
    created = api.post("/v1/reps", json={"name": name, "phone": phone})
    assert created.status_code == 201, created.text
    rep_id: str = created.json()["id"]
    return rep_id


def _open(browser: webdriver.Chrome, url: str, element_id: str) -> None:
    browser.get(url)
    wait_for(browser, element_id)


def _left(old: WebElement) -> Callable[[webdriver.Chrome], bool]:
    """Whether the browser left the page `old` belongs to. Chromium reports an element of a
    replaced page either as stale or, caught mid-navigation, as a node that "does not belong
    to the document": both mean the old page is gone."""

    def left(_browser: webdriver.Chrome) -> bool:
        try:
            old.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False

    return left


def _click_and_wait(browser: webdriver.Chrome, button_id: str, element_id: str) -> None:
    """Click, then wait for the next page (the old page's elements would answer first)."""
    old = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.ID, button_id).click()
    WebDriverWait(browser, WAIT).until(_left(old))
    wait_for(browser, element_id)


def _type_into(element: WebElement, text: str) -> None:
    element.clear()
    element.send_keys(text)


def _labelled_and_fits(browser: webdriver.Chrome) -> None:
    """Every control has its label, the page has no inline script or style, and it fits a
    360 px screen without scrolling sideways."""
    for control in browser.find_elements(
        By.CSS_SELECTOR, "input:not([type=hidden]), select, textarea"
    ):
        control_id = control.get_attribute("id")
        assert browser.find_elements(By.CSS_SELECTOR, f"label[for='{control_id}']"), control_id
    source = browser.page_source
    assert "<script>" not in source and "style=" not in source
    size = browser.get_window_size()
    browser.set_window_size(360, 800)
    try:
        width = browser.execute_script("return document.documentElement.clientWidth")
        scroll = browser.execute_script("return document.documentElement.scrollWidth")
        assert scroll <= width
    finally:
        browser.set_window_size(size["width"], size["height"])


def test_publish_refused_at_its_line_then_published_cloned_and_deleted(
    browser: webdriver.Chrome, console: str, api: httpx.Client, issued_key: accounts.IssuedKey
) -> None:
    _publish(api, "hello")
    sign_in(browser, console, issued_key.secret)
    wait_for(browser, "nav-playbooks")
    browser.find_element(By.ID, "nav-playbooks").click()
    wait_for(browser, "playbooks")
    row = browser.find_element(By.CSS_SELECTOR, "#playbooks tbody tr").text
    assert "hello" in row and "Hello" in row and "v1" in row
    browser.find_element(By.CSS_SELECTOR, "#playbooks a.playbook-link").click()
    wait_for(browser, "document")
    assert browser.find_element(By.ID, "document").text == PLAYBOOK.rstrip("\n")
    activities = browser.find_element(By.ID, "activities").text
    assert "qualified outcome" in activities and "started event" in activities
    assert "no warnings" in browser.find_element(By.ID, "warnings").text
    _labelled_and_fits(browser)

    # A draft the validator refuses: the error sits under line 6, and nothing is published.
    _type_into(browser.find_element(By.ID, "document-edit"), BROKEN)
    _click_and_wait(browser, "publish", "draft")
    # The answer opens at the refused draft, not at the top of a long page.
    assert browser.current_url.endswith("/publish#publish-heading")
    line = browser.find_element(By.ID, "line-6")
    assert "kind: aks" in line.text
    [error] = line.find_elements(By.CSS_SELECTOR, ".line-error")
    assert "unknown step kind 'aks'" in error.text and "steps[0].kind" in error.text
    assert "Line 6" in browser.find_element(By.ID, "draft-errors").text
    # The draft stays in the editor to fix.
    edit = browser.find_element(By.ID, "document-edit")
    assert edit.get_attribute("value") == BROKEN
    assert api.get("/v1/playbooks/hello").json()["latest_version"] == 1
    _labelled_and_fits(browser)

    # Fixed, it publishes version 2.
    _type_into(edit, SECOND)
    _click_and_wait(browser, "publish", "playbook-notice")
    assert browser.find_element(By.ID, "playbook-notice").text == "Published version 2."
    latest = api.get("/v1/playbooks/hello").json()
    assert (latest["version"], latest["name"], latest["document"]) == (2, "Hello again", SECOND)
    assert "version 2 of 2" in browser.find_element(By.ID, "playbook-version").text
    # The older version is still there to read.
    Select(browser.find_element(By.ID, "version")).select_by_value("1")
    _click_and_wait(browser, "show-version", "document")
    assert browser.find_element(By.ID, "document").text == PLAYBOOK.rstrip("\n")

    # Clone version 1 under a new id.
    _type_into(browser.find_element(By.ID, "clone-id"), "hello-copy")
    _click_and_wait(browser, "clone", "playbook-notice")
    assert "Cloned from hello" in browser.find_element(By.ID, "playbook-notice").text
    copy = api.get("/v1/playbooks/hello-copy").json()
    assert (copy["version"], copy["document"]) == (1, PLAYBOOK)
    # A clone onto a taken id is refused with the API's words.
    _type_into(browser.find_element(By.ID, "clone-id"), "hello")
    _click_and_wait(browser, "clone", "clone-error")
    assert "already exists" in browser.find_element(By.ID, "clone-error").text
    assert api.get("/v1/playbooks/hello").json()["latest_version"] == 2

    # Delete the copy: gone from the list and the API.
    _click_and_wait(browser, "delete", "playbooks-notice")
    assert "Deleted hello-copy" in browser.find_element(By.ID, "playbooks-notice").text
    ids = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#playbooks a.playbook-link")]
    assert ids == ["hello"]
    assert api.get("/v1/playbooks/hello-copy").status_code == 404


def test_a_new_playbook_with_a_syntax_error_then_published(
    browser: webdriver.Chrome, console: str, api: httpx.Client, issued_key: accounts.IssuedKey
) -> None:
    sign_in(browser, console, issued_key.secret)
    wait_for(browser, "nav-playbooks")
    _open(browser, console + "/console/playbooks", "new-document")
    browser.find_element(By.ID, "new-id").send_keys("fresh")
    broken = PLAYBOOK.replace('    text: "Hi', "    text: [Hi")
    browser.find_element(By.ID, "new-document").send_keys(broken)
    _click_and_wait(browser, "publish-new", "draft")
    errors = browser.find_element(By.ID, "draft-errors").text
    assert "YAML error" in errors and "Line " in errors
    assert browser.find_elements(By.CSS_SELECTOR, "#draft .line-error")
    assert api.get("/v1/playbooks/fresh").status_code == 404
    assert browser.find_element(By.ID, "new-id").get_attribute("value") == "fresh"

    _type_into(browser.find_element(By.ID, "new-document"), PLAYBOOK)
    _click_and_wait(browser, "publish-new", "playbook-notice")
    assert browser.find_element(By.ID, "playbook-notice").text == "Published version 1."
    assert api.get("/v1/playbooks/fresh").json()["document"] == PLAYBOOK

    # The same id again from the list is refused: its page publishes its next version.
    _open(browser, console + "/console/playbooks", "new-document")
    browser.find_element(By.ID, "new-id").send_keys("fresh")
    browser.find_element(By.ID, "new-document").send_keys(SECOND)
    _click_and_wait(browser, "publish-new", "publish-error")
    assert "exists already" in browser.find_element(By.ID, "publish-error").text
    assert api.get("/v1/playbooks/fresh").json()["latest_version"] == 1


def _rule(api: httpx.Client, origin: str) -> dict[str, Any]:
    [rule] = api.get("/v1/sources", params={"origin": origin}).json()["data"]
    return dict(rule)


def test_a_source_rule_created_edited_cloned_and_deleted(
    browser: webdriver.Chrome, console: str, api: httpx.Client, issued_key: accounts.IssuedKey
) -> None:
    _publish(api, "hello")
    _publish(api, "other", SECOND)
    ann = _rep(api, "Ann Rep", "+14155550101")
    bob = _rep(api, "Bob Rep", "+14155550102")
    sign_in(browser, console, issued_key.secret)
    wait_for(browser, "nav-sources")
    browser.find_element(By.ID, "nav-sources").click()
    wait_for(browser, "sources")
    assert browser.find_element(By.ID, "sources-count").text == "0 rules."
    _labelled_and_fits(browser)

    browser.find_element(By.ID, "origin").send_keys("EverQuote")
    Select(browser.find_element(By.ID, "rule-playbook")).select_by_value("hello")
    browser.find_element(By.ID, "distribution-round_robin").click()
    browser.find_element(By.ID, f"rep-{ann}").click()
    browser.find_element(By.ID, f"rep-{bob}").click()
    _click_and_wait(browser, "create-rule", "source-notice")
    assert browser.find_element(By.ID, "source-notice").text == "Source rule created."
    rule = _rule(api, "EverQuote")
    assert (rule["playbook_id"], rule["distribution"], rule["rep_ids"]) == (
        "hello",
        "round_robin",
        [ann, bob],
    )
    assert "Ann Rep, Bob Rep" in browser.find_element(By.ID, "rule-summary").text
    _labelled_and_fits(browser)

    # Edit: another playbook, manual distribution (which takes no reps).
    Select(browser.find_element(By.ID, "rule-playbook")).select_by_value("other")
    browser.find_element(By.ID, "distribution-manual").click()
    _click_and_wait(browser, "save-rule", "source-notice")
    rule = _rule(api, "EverQuote")
    assert (rule["playbook_id"], rule["distribution"], rule["rep_ids"]) == ("other", "manual", [])

    # Round robin with no rep ticked is the API's 422, shown, and changes nothing.
    browser.find_element(By.ID, "distribution-round_robin").click()
    _click_and_wait(browser, "save-rule", "source-error")
    assert "at least one rep" in browser.find_element(By.ID, "source-error").text
    assert _rule(api, "EverQuote")["distribution"] == "manual"

    # Clone for another origin.
    browser.find_element(By.ID, "clone-origin").send_keys("QuoteWizard")
    _click_and_wait(browser, "clone-rule", "source-notice")
    assert "Leads from QuoteWizard" in browser.find_element(By.ID, "rule-title").text
    assert _rule(api, "QuoteWizard")["playbook_id"] == "other"

    # One rule per origin, whatever the case.
    _open(browser, console + "/console/sources", "origin")
    browser.find_element(By.ID, "origin").send_keys("everquote")
    browser.find_element(By.ID, f"rep-{ann}").click()
    _click_and_wait(browser, "create-rule", "source-error")
    assert "already has a source rule" in browser.find_element(By.ID, "source-error").text
    assert len(api.get("/v1/sources").json()["data"]) == 2

    # A playbook a rule starts can't be deleted; the page says which rule.
    _open(browser, console + "/console/playbooks/other", "delete")
    _click_and_wait(browser, "delete", "delete-error")
    assert "EverQuote" in browser.find_element(By.ID, "delete-error").text
    assert api.get("/v1/playbooks/other").status_code == 200

    # Delete the EverQuote rule.
    everquote = _rule(api, "EverQuote")
    _open(browser, f"{console}/console/sources/{everquote['id']}", "delete-rule")
    _click_and_wait(browser, "delete-rule", "sources-notice")
    origins = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#sources a.source-link")]
    assert origins == ["QuoteWizard"]
    assert api.get(f"/v1/sources/{everquote['id']}").status_code == 404


def test_a_forged_csrf_token_is_refused_and_changes_nothing(
    browser: webdriver.Chrome, console: str, api: httpx.Client, issued_key: accounts.IssuedKey
) -> None:
    _publish(api, "hello")
    sign_in(browser, console, issued_key.secret)
    wait_for(browser, "nav-playbooks")
    _open(browser, console + "/console/playbooks/hello", "delete")
    # Another site's form would carry no valid token: replace this one's before clicking.
    browser.execute_script(
        "document.querySelectorAll('input[name=csrf]').forEach(i => { i.value = 'forged'; });"
    )
    old = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.ID, "delete").click()
    WebDriverWait(browser, WAIT).until(_left(old))
    assert "403 Forbidden" in browser.find_element(By.TAG_NAME, "body").text
    assert api.get("/v1/playbooks/hello").status_code == 200


def _other_account(settings: Settings) -> accounts.IssuedKey:
    async def create() -> accounts.IssuedKey:
        # Its own engine in its own loop: the test is synchronous, the server runs in a thread.
        engine = create_engine(settings.database)
        try:
            async with transaction(session_factory(engine)) as session:
                _account, issued = await accounts.create_account(session, "B Insurance")
        finally:
            await engine.dispose()
        return issued

    return asyncio.run(create())


def test_another_accounts_playbook_and_rule_are_404_pages(
    browser: webdriver.Chrome,
    console: str,
    api: httpx.Client,
    issued_key: accounts.IssuedKey,
    settings: Settings,
) -> None:
    other = _other_account(settings)
    headers = {"Authorization": f"Bearer {other.secret}"}
    with httpx.Client(base_url=console, headers=headers) as theirs:
        _publish(theirs, "secret-drip")
        rep = _rep(theirs, "Their Rep", "+14155550109")
        rule = theirs.post(
            "/v1/sources",
            json={"origin": "TheirOrigin", "playbook_id": "secret-drip", "rep_ids": [rep]},
        ).json()
    sign_in(browser, console, issued_key.secret)
    wait_for(browser, "nav-playbooks")
    _open(browser, console + "/console/playbooks/secret-drip", "not-found")
    assert "still interested" not in browser.page_source
    _open(browser, f"{console}/console/sources/{rule['id']}", "not-found")
    assert "TheirOrigin" not in browser.page_source
    _open(browser, console + "/console/playbooks", "playbooks")
    assert "secret-drip" not in browser.page_source
    _open(browser, console + "/console/sources", "sources")
    assert "TheirOrigin" not in browser.page_source and "Their Rep" not in browser.page_source
    # Nor cloned or deleted from this account, with its own valid token.
    cookie = browser.get_cookie(COOKIE)
    assert cookie is not None
    with httpx.Client(base_url=console, cookies={COOKIE: cookie["value"]}) as web:
        match = re.search(r'name="csrf" value="([^"]+)"', web.get("/console/playbooks").text)
        assert match is not None
        for path, data in (
            ("/console/playbooks/secret-drip/delete", {}),
            ("/console/playbooks/secret-drip/clone", {"clone_id": "mine"}),
            (f"/console/sources/{rule['id']}/delete", {}),
        ):
            answer = web.post(path, data={"csrf": match.group(1), **data})
            assert answer.status_code == 404, (path, answer.text)
    with httpx.Client(base_url=console, headers=headers) as theirs:
        assert theirs.get("/v1/playbooks/secret-drip").status_code == 200
        assert theirs.get(f"/v1/sources/{rule['id']}").status_code == 200
    assert api.get("/v1/playbooks").json()["data"] == []
