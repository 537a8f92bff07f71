"""The README's "Try it" driven entirely through the console, in a real browser, against the
gateway served with its worker in the same process and the built-in sandbox in real time (as
`gateway run` serves them): sign in, register the number the account texts from (Numbers),
publish the example mortgage playbook (Playbooks), start a play for a lead (Conversations),
be the lead on the Dev phone and see the first text, reply "yes", and see the next question on
the play's page. No curl, no API call: every step is a page's form. The API's refusals (a
number registered twice, a running play started again, a misspelt setting) come back on the
page and change nothing; a form without its CSRF token is refused."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from gateway import accounts
from gateway.cli import demo
from gateway.console.sessions import COOKIE
from tests.support.console import WAIT, sign_in, wait_for

OUR_NUMBER = "+18085550100"
MORTGAGE = (Path(__file__).parents[2] / "examples" / "mortgage-qualification.yaml").read_text()
FIRST_QUESTION = "Still looking for a mortgage? Reply YES or NO."
NEXT_QUESTION = "Great! Roughly how much would you like to borrow? (e.g. 350k)"
# Bounds for a loaded machine to get a text through the worker and the sandbox, not claims.
SLOW = 60


def _left(old: WebElement) -> bool:
    """Whether the browser left the page `old` belongs to (stale, or caught mid-navigation)."""
    try:
        old.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        if "does not belong to the document" in str(exc):
            return True
        raise
    return False


def _submit(browser: webdriver.Chrome, button_id: str, element_id: str) -> None:
    """Click, then wait for the next page (the old page's elements would answer first)."""
    old = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.ID, button_id).click()
    WebDriverWait(browser, WAIT).until(lambda _b: _left(old))
    wait_for(browser, element_id)


def _type(browser: webdriver.Chrome, element_id: str, text: str) -> None:
    element = browser.find_element(By.ID, element_id)
    element.clear()
    element.send_keys(text)


def _texts(browser: webdriver.Chrome, selector: str) -> list[str]:
    # One read in the page: live.js may replace the list between two WebDriver calls.
    found = browser.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent)",
        selector,
    )
    return [" ".join(str(text).split()) for text in found]


def _until_text(browser: webdriver.Chrome, selector: str, part: str) -> None:
    # live.js refreshes the texts every few seconds; nothing is reloaded by the test.
    WebDriverWait(browser, SLOW).until(
        lambda b: any(part in text for text in _texts(b, selector)), f"{part!r} in {selector}"
    )


def _labelled_and_fits(browser: webdriver.Chrome) -> None:
    """Every control has its label, the page has no inline script or style, and it fits a
    360 px screen without scrolling sideways (as tests/console/test_playbooks.py checks)."""
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


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match is not None
    return match.group(1)


def test_the_readme_try_it_runs_in_the_console(
    browser: webdriver.Chrome, gateway_run: str, issued_key: accounts.IssuedKey
) -> None:
    lead = demo.choose_lead(datetime.now(UTC)).phone  # texted now, by the gate's own rule
    sign_in(browser, gateway_run, issued_key.secret)
    wait_for(browser, "ledger")

    # The number the account texts from; the same again is the API's 409, shown on the page.
    browser.find_element(By.ID, "nav-numbers").click()
    wait_for(browser, "add-number")
    assert browser.find_element(By.ID, "numbers-count").text == "0 numbers."
    _type(browser, "number-number", OUR_NUMBER)
    _submit(browser, "add-number", "numbers-notice")
    assert browser.find_element(By.ID, "numbers-count").text == "1 number."
    assert OUR_NUMBER in browser.find_element(By.ID, "numbers").text
    _type(browser, "number-number", OUR_NUMBER)
    _submit(browser, "add-number", "numbers-error")
    assert "already registered" in browser.find_element(By.ID, "numbers-error").text
    assert browser.find_element(By.ID, "numbers-count").text == "1 number."
    _labelled_and_fits(browser)

    # The example mortgage playbook, pasted into the Playbooks page's form. Set as a paste
    # would: ChromeDriver cannot type its emoji (outside the BMP) key by key.
    browser.find_element(By.ID, "nav-playbooks").click()
    wait_for(browser, "new-document")
    _type(browser, "new-id", "mortgage-qualification")
    browser.execute_script("document.getElementById('new-document').value = arguments[0]", MORTGAGE)
    _submit(browser, "publish-new", "playbook-notice")
    assert browser.find_element(By.ID, "playbook-notice").text == "Published version 1."

    # A lead arrives: the start form on Conversations. A misspelt setting is the API's 422 with
    # its did-you-mean, and starts nothing.
    browser.find_element(By.ID, "nav-plays").click()
    wait_for(browser, "start-play")
    playbook = browser.find_element(By.ID, "start-playbook")
    assert playbook.get_attribute("value") == "mortgage-qualification"
    assert "partner_name (required)" in browser.find_element(By.ID, "start-declared").text
    _labelled_and_fits(browser)
    _type(browser, "start-phone", lead)
    _type(browser, "start-first-name", "Kai")
    _type(browser, "start-origin", "EverQuote")
    _type(browser, "start-origin-key", "eq-123")
    _type(browser, "start-settings", '{"partnername": "Acme Lending"}')
    _submit(browser, "start-play", "start-error")
    assert "did you mean 'partner_name'" in browser.find_element(By.ID, "start-error").text
    assert browser.find_element(By.ID, "start-phone").get_attribute("value") == lead
    assert browser.find_element(By.ID, "plays-count").text == "0 plays."
    _type(browser, "start-settings", '{"partner_name": "Acme Lending"}')
    _submit(browser, "start-play", "play-notice")
    assert "The play is started" in browser.find_element(By.ID, "play-notice").text
    play_url = browser.current_url.split("?")[0]
    assert "Kai" in browser.find_element(By.ID, "play-lead").text

    # The same lead again while the play runs: the API's 409, on the page.
    browser.find_element(By.ID, "nav-plays").click()
    wait_for(browser, "start-summary")
    if browser.find_element(By.ID, "start").get_attribute("open") is None:
        browser.find_element(By.ID, "start-summary").click()
    _type(browser, "start-phone", lead)
    _type(browser, "start-settings", '{"partner_name": "Acme Lending"}')
    _submit(browser, "start-play", "start-error")
    assert "already has a running play" in browser.find_element(By.ID, "start-error").text

    # Be the lead: the first text arrives on the dev phone; reply "yes" from it.
    browser.find_element(By.ID, "nav-dev-phone").click()
    wait_for(browser, "pick")
    browser.find_element(By.CSS_SELECTOR, f"#pick option[value='{lead}']").click()
    _submit(browser, "open-picked", "phone")
    _until_text(browser, "#texts .text-body", FIRST_QUESTION)
    assert any("Hi Kai" in text for text in _texts(browser, "#texts .text-body"))
    _type(browser, "body", "yes")
    _submit(browser, "send", "notice")

    # The play's page shows the reply and the next question, live.
    browser.get(play_url)
    wait_for(browser, "messages")
    _until_text(browser, "#messages .body", NEXT_QUESTION)
    assert "yes" in _texts(browser, "#messages .body")

    # Removing the number: the list is empty again.
    browser.find_element(By.ID, "nav-numbers").click()
    wait_for(browser, "numbers")
    remove = browser.find_element(By.CSS_SELECTOR, "#numbers button").get_attribute("id")
    assert remove is not None
    _submit(browser, remove, "numbers-notice")
    assert browser.find_element(By.ID, "numbers-count").text == "0 numbers."


def test_the_new_forms_refuse_a_missing_csrf_token(
    browser: webdriver.Chrome, gateway_run: str, issued_key: accounts.IssuedKey
) -> None:
    sign_in(browser, gateway_run, issued_key.secret)
    wait_for(browser, "ledger")
    cookie = browser.get_cookie(COOKIE)
    assert cookie is not None
    with httpx.Client(
        base_url=gateway_run, headers={"Cookie": f"{COOKIE}={cookie['value']}"}
    ) as session:
        forged = session.post("/console/numbers", data={"number": OUR_NUMBER})
        assert forged.status_code == 403 and "security token" in forged.text
        wrong = session.post("/console/numbers", data={"number": OUR_NUMBER, "csrf": "x" * 64})
        assert wrong.status_code == 403
        started = session.post("/console/plays", data={"playbook_id": "p", "phone": OUR_NUMBER})
        assert started.status_code == 403
        page = session.get("/console/numbers")
        assert "0 numbers." in page.text
        # The same form with the page's token goes through: the refusals were about the token.
        token = _csrf(page.text)
        added = session.post("/console/numbers", data={"number": OUR_NUMBER, "csrf": token})
        assert added.status_code == 303
        assert "1 number." in session.get("/console/numbers").text
