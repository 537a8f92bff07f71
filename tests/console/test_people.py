"""The console's Reps and Leads pages in a real browser: a rep's availability toggled and a rep
added (a bad phone refused with the API's words, nothing added), the leads list searched by
phone, one lead with its consent evidence and opt-out status, followed to its play; a forged
toggle refused (CSRF) and another account's lead a 404, against the app on 127.0.0.1."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from gateway import accounts
from gateway.console.sessions import COOKIE
from gateway.db import create_engine, session_factory, transaction
from gateway.settings import Settings
from tests.support.console import WAIT, api_client, sign_in, tamper, wait_for, wait_text

LEAD = "+14155550123"
OTHER_LEAD = "+14155550166"
CONSENT_WORDS = "I agree to receive texts from Acme Lending about my loan."
PLAYBOOK = """\
name: Hello
activities:
  outcomes: [qualified]
steps:
  - id: hi
    kind: ask
    text: "Hi {lead.first_name|there}, still interested? Reply YES"
    choices:
      - keywords: [yes]
        outcome: qualified
"""


def _signed_in(browser: webdriver.Chrome, url: str, key: accounts.IssuedKey) -> None:
    sign_in(browser, url, key.secret)
    wait_for(browser, "nav-reps")


def _labelled(browser: webdriver.Chrome) -> None:
    """Every visible control on the page has its label."""
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


def _rep(url: str, key: accounts.IssuedKey, rep_id: str) -> dict[str, Any]:
    with api_client(url, key) as api:
        found = api.get(f"/v1/reps/{rep_id}")
    assert found.status_code == 200, found.text
    body: dict[str, Any] = found.json()
    return body


def test_a_reps_availability_toggles_and_a_rep_is_added(
    browser: webdriver.Chrome, console: str, issued_key: accounts.IssuedKey
) -> None:
    with api_client(console, issued_key) as api:
        made = api.post("/v1/reps", json={"name": "Dana Reyes", "phone": "+14155550102"})
        assert made.status_code == 201, made.text
    rep = made.json()
    _signed_in(browser, console, issued_key)
    browser.find_element(By.ID, "nav-reps").click()
    wait_for(browser, "reps")
    _labelled(browser)
    assert browser.find_element(By.ID, f"available-{rep['id']}").text == "Available"

    # The toggle: the rep leaves every rotation, as PATCH {"available": false} does.
    browser.find_element(By.ID, f"toggle-{rep['id']}").click()
    wait_text(browser, f"#available-{rep['id']}", "Unavailable")
    assert _rep(console, issued_key, rep["id"])["available"] is False
    assert browser.find_element(By.ID, f"toggle-{rep['id']}").text == "Mark available"
    browser.find_element(By.ID, f"toggle-{rep['id']}").click()
    wait_text(browser, f"#available-{rep['id']}", "Available")
    assert _rep(console, issued_key, rep["id"])["available"] is True

    # A phone the API refuses: its message, the form as typed, no rep added.
    browser.find_element(By.ID, "rep-name").send_keys("Sam Ortiz")
    browser.find_element(By.ID, "rep-phone").send_keys("555")
    browser.find_element(By.ID, "add-rep").click()
    wait_for(browser, "reps-error")
    assert "phone" in browser.find_element(By.ID, "reps-error").text
    assert browser.find_element(By.ID, "rep-name").get_attribute("value") == "Sam Ortiz"
    with api_client(console, issued_key) as api:
        assert len(api.get("/v1/reps").json()["data"]) == 1

    # Then a good one, added unavailable (the box unticked).
    browser.find_element(By.ID, "rep-phone").clear()
    browser.find_element(By.ID, "rep-phone").send_keys("+14155550177")
    browser.find_element(By.ID, "rep-email").send_keys("sam@example.com")
    browser.find_element(By.ID, "rep-available").click()
    browser.find_element(By.ID, "add-rep").click()
    wait_text(browser, "#reps-count", "2 reps")
    with api_client(console, issued_key) as api:
        listed = api.get("/v1/reps").json()["data"]
    added = [r for r in listed if r["name"] == "Sam Ortiz"]
    assert [(r["phone"], r["email"], r["available"]) for r in added] == [
        ("+14155550177", "sam@example.com", False)
    ]
    assert browser.find_element(By.ID, f"available-{added[0]['id']}").text == "Unavailable"
    _fits_360(browser, "reps")


def test_a_forged_toggle_is_refused_and_changes_nothing(
    browser: webdriver.Chrome, console: str, issued_key: accounts.IssuedKey
) -> None:
    with api_client(console, issued_key) as api:
        rep = api.post("/v1/reps", json={"name": "Dana Reyes", "phone": "+14155550102"}).json()
    _signed_in(browser, console, issued_key)
    browser.get(f"{console}/console/reps")
    wait_for(browser, "reps")
    # The form's token altered in the page, as a forged form would carry a wrong one.
    form = browser.find_element(By.ID, f"rep-{rep['id']}")
    token = form.find_element(By.CSS_SELECTOR, "input[name=csrf]")
    tamper(browser, token)  # a token that differs from the issued one
    browser.find_element(By.ID, f"toggle-{rep['id']}").click()
    wait_text(browser, "body", "403 Forbidden")
    assert "security token" in browser.find_element(By.TAG_NAME, "body").text
    assert _rep(console, issued_key, rep["id"])["available"] is True
    # And with no token at all, from outside the browser with its session cookie.
    cookie = browser.get_cookie(COOKIE)
    assert cookie is not None
    with httpx.Client(base_url=console, headers={"Cookie": f"{COOKIE}={cookie['value']}"}) as web:
        refused = web.post(f"/console/reps/{rep['id']}/availability", data={"available": "false"})
        assert refused.status_code == 403
        added = web.post("/console/reps", data={"name": "X", "phone": "+14155550199"})
        assert added.status_code == 403
    assert _rep(console, issued_key, rep["id"])["available"] is True
    with api_client(console, issued_key) as api:
        assert len(api.get("/v1/reps").json()["data"]) == 1


def _start_play(url: str, key: accounts.IssuedKey, phone: str, **lead: Any) -> dict[str, Any]:
    with api_client(url, key) as api:
        published = api.put(
            "/v1/playbooks/hello", content=PLAYBOOK, headers={"Content-Type": "application/yaml"}
        )
        assert published.status_code in (200, 201), published.text
        body = {"playbook_id": "hello", "lead": {"phone": phone, **lead}}
        created = api.post("/v1/plays", json=body)
        assert created.status_code == 201, created.text
        play: dict[str, Any] = created.json()
    return play


def test_a_lead_shows_consent_and_opt_out_and_leads_to_its_play(
    browser: webdriver.Chrome, console: str, issued_key: accounts.IssuedKey
) -> None:
    consent = {
        "captured_at": "2026-01-05T15:04:00Z",
        "source": "loan-form",
        "text": CONSENT_WORDS,
        "url": "https://acme.example/apply",
    }
    play = _start_play(console, issued_key, LEAD, first_name="Ann", consent=consent)
    other = _start_play(console, issued_key, OTHER_LEAD, first_name="Bo")
    with api_client(console, issued_key) as api:
        opted = api.post(
            "/v1/opt-outs", json={"phone": OTHER_LEAD, "actor": "jane@acme.test", "note": "asked"}
        )
        assert opted.status_code == 201, opted.text

    _signed_in(browser, console, issued_key)
    browser.find_element(By.ID, "nav-leads").click()
    wait_for(browser, "leads")
    _labelled(browser)
    phones = [link.text for link in browser.find_elements(By.CSS_SELECTOR, "#leads a.lead-link")]
    assert phones == [LEAD, OTHER_LEAD]

    # Searched by phone (typed loosely: the API normalises it), then opened.
    browser.find_element(By.ID, "lead-phone").send_keys("(415) 555-0123")
    browser.find_element(By.ID, "search").click()
    WebDriverWait(browser, WAIT).until(ec.url_contains("phone="))
    wait_for(browser, "leads")
    links = browser.find_elements(By.CSS_SELECTOR, "#leads a.lead-link")
    assert [link.text for link in links] == [LEAD]
    links[0].click()
    wait_for(browser, "lead-summary")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Ann"
    assert browser.find_element(By.ID, "lead-opt-out").text == "Not opted out"
    assert CONSENT_WORDS in browser.find_element(By.ID, "consents").text
    assert "loan-form" in browser.find_element(By.ID, "consents").text
    play_links = browser.find_elements(By.CSS_SELECTOR, "#lead-plays a.play-link")
    assert [link.text for link in play_links] == [play["id"]]
    _fits_360(browser, "lead-summary")

    # Followed to its play: the Conversations page of that play.
    browser.find_element(By.CSS_SELECTOR, "#lead-plays a.play-link").click()
    WebDriverWait(browser, WAIT).until(ec.url_contains(f"/console/plays/{play['id']}"))
    wait_for(browser, "play-summary")
    assert LEAD in browser.find_element(By.ID, "play-lead").text

    # The opted-out lead says so, with when and how.
    browser.get(f"{console}/console/leads/{other['lead_id']}")
    wait_for(browser, "lead-opt-out")
    opt_out = browser.find_element(By.ID, "lead-opt-out").text
    assert opt_out.startswith("Opted out at ")
    assert "by api" in opt_out
    assert browser.find_element(By.ID, "consents").text == "No consent recorded."

    # A phone the API can't read: its message, no list.
    browser.get(f"{console}/console/leads?phone=12")
    wait_for(browser, "leads-error")
    assert "phone" in browser.find_element(By.ID, "leads-error").text
    assert not browser.find_elements(By.ID, "leads")


def _new_account(settings: Settings, name: str) -> accounts.IssuedKey:
    async def create() -> accounts.IssuedKey:
        engine = create_engine(settings.database)
        try:
            async with transaction(session_factory(engine)) as session:
                _account, issued = await accounts.create_account(session, name)
        finally:
            await engine.dispose()
        return issued

    return asyncio.run(create())


def test_the_leads_list_pages_and_another_accounts_lead_is_a_404(
    browser: webdriver.Chrome,
    console: str,
    issued_key: accounts.IssuedKey,
    settings: Settings,
) -> None:
    theirs = _start_play(console, _new_account(settings, "B Insurance"), "+14155550188")
    with api_client(console, issued_key) as api:
        for n in range(52):  # one more page than the console's 50
            created = api.post("/v1/leads", json={"phone": f"+1415555{n:04d}"})
            assert created.status_code in (200, 201), created.text
    _signed_in(browser, console, issued_key)
    browser.get(f"{console}/console/leads")
    wait_for(browser, "leads")
    first = [link.text for link in browser.find_elements(By.CSS_SELECTOR, "#leads a.lead-link")]
    assert len(first) == 50
    browser.find_element(By.ID, "next-page").click()
    WebDriverWait(browser, WAIT).until(ec.url_contains("cursor="))
    wait_for(browser, "leads")
    second = [link.text for link in browser.find_elements(By.CSS_SELECTOR, "#leads a.lead-link")]
    assert len(second) == 2
    assert not set(first) & set(second)
    assert "+14155550188" not in first + second
    assert not browser.find_elements(By.ID, "next-page")

    browser.get(f"{console}/console/leads/{theirs['lead_id']}")
    wait_for(browser, "not-found")
    assert "+14155550188" not in browser.page_source
    cookie = browser.get_cookie(COOKIE)
    assert cookie is not None
    with httpx.Client(base_url=console, headers={"Cookie": f"{COOKIE}={cookie['value']}"}) as web:
        assert web.get(f"/console/leads/{theirs['lead_id']}").status_code == 404
        assert web.get("/console/leads/lead_nope").status_code == 404
