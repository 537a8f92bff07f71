"""The dev phone in a real browser against the gateway served with its worker in the same
process and the built-in sandbox in real time (as `gateway run` serves them): a lead's phone
gets the play's text, replies from the page (a signed inbound text through the sandbox), the
play advances, and moving the clock a day forward brings the drip's next text. Without the
built-in sandbox (Twilio credentials set) the dev phone does not exist."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy.ext.asyncio import AsyncEngine

from compliance import quiet_hours
from gateway import accounts
from gateway.app import create_app
from gateway.cli import demo
from gateway.clock import now
from gateway.console.sessions import COOKIE
from gateway.db import SessionFactory, transaction
from gateway.models import KeyScope
from gateway.settings import Settings
from tests.support.console import WAIT, click_to_new_page, sign_in, wait_for, wait_text
from tests.support.servers import serve_in_thread

LEAD = "+14155550123"  # the read-key and production tests: a phone nothing texts
OUR_NUMBER = "+14155550100"
PLAYBOOK = """\
name: Hello
steps:
  - id: hi
    kind: ask
    text: "Hi {lead.first_name|there}, still interested? Reply YES"
    choices:
      - keywords: [yes, yep]
        goto: thanks
  - id: thanks
    kind: send
    text: "Great, thanks!"
  - id: tomorrow
    kind: send
    delay: 1d
    text: "A day later: any questions?"
"""
# The first text carries the opt-out footer; the ones after do not.
FIRST = "Hi Ann, still interested? Reply YES Reply STOP to opt out."
# Bounds for a loaded machine to get a text through the worker and the sandbox, not claims.
SLOW = 60


def _lead_in_calling_hours() -> str:
    """A lead the gate lets us text now and a day later (the drip's next step), by the
    gateway's own rule, as `gateway demo` picks one: the gateway here runs on the wall clock."""
    at = datetime.now(UTC)
    for phone, _place in demo.LEADS:
        if all(
            (decision := quiet_hours.check(phone, when)).allowed
            and decision.open_until is not None
            and decision.open_until - when >= demo.MARGIN
            for when in (at, at + timedelta(days=1))
        ):
            return phone
    raise AssertionError(f"no demo lead is inside calling hours at {at:%H:%M} UTC and a day later")


def _texts(browser: webdriver.Chrome) -> list[str]:
    # One read in the page: live.js may replace the list between two WebDriver calls.
    found = browser.execute_script(
        "return Array.from(document.querySelectorAll('#texts .text-body')).map(e => e.textContent)"
    )
    return [str(text) for text in found]


def _text_of(browser: webdriver.Chrome, element_id: str) -> str:
    return str(
        browser.execute_script(f"return document.getElementById('{element_id}').textContent")
    )


def _until_text(browser: webdriver.Chrome, body: str) -> None:
    # live.js refreshes the texts every 2 s; nothing is reloaded by the test.
    WebDriverWait(browser, SLOW).until(lambda b: body in _texts(b))


def test_the_dev_phone_plays_a_whole_conversation(
    browser: webdriver.Chrome, gateway_run: str, issued_key: accounts.IssuedKey
) -> None:
    lead = _lead_in_calling_hours()
    with httpx.Client(
        base_url=gateway_run, headers={"Authorization": f"Bearer {issued_key.secret}"}, timeout=30
    ) as api:
        assert api.post("/v1/numbers", json={"number": OUR_NUMBER}).status_code == 201
        published = api.put(
            "/v1/playbooks/hello", content=PLAYBOOK, headers={"Content-Type": "application/yaml"}
        )
        assert published.status_code == 201, published.text
        body = {"playbook_id": "hello", "lead": {"phone": lead, "first_name": "Ann"}}
        created = api.post("/v1/plays", json=body)
        assert created.status_code == 201, created.text

    sign_in(browser, gateway_run, issued_key.secret)
    wait_for(browser, "ledger")
    browser.find_element(By.ID, "nav-dev-phone").click()
    wait_for(browser, "pick")
    browser.find_element(By.CSS_SELECTOR, f"#pick option[value='{lead}']").click()
    browser.find_element(By.ID, "open-picked").click()
    wait_for(browser, "phone")
    _until_text(browser, FIRST)

    browser.find_element(By.ID, "body").send_keys("yep")
    browser.find_element(By.ID, "send").click()
    wait_for(browser, "notice")
    _until_text(browser, "yep")
    _until_text(browser, "Great, thanks!")
    assert "A day later: any questions?" not in _texts(browser)

    before = _text_of(browser, "gateway-now")
    browser.find_element(By.ID, "skip-86400").click()
    wait_text(browser, "#notice", "a day")
    assert _text_of(browser, "gateway-now")[:10] > before[:10]  # the next day
    sandbox_day = _text_of(browser, "sandbox-now")[:10]
    assert sandbox_day == _text_of(browser, "gateway-now")[:10]
    _until_text(browser, "A day later: any questions?")
    assert _texts(browser) == [
        FIRST,
        "yep",
        "Great, thanks!",
        "A day later: any questions?",
    ]


@pytest.fixture
async def read_key(sessions: SessionFactory, issued_key: accounts.IssuedKey) -> accounts.IssuedKey:
    async with transaction(sessions) as session:
        return await accounts.create_key(session, issued_key.key.account_id, "read", KeyScope.READ)


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match is not None
    return match.group(1)


def _session(url: str, browser: webdriver.Chrome) -> httpx.Client:
    """An HTTP client with the browser's session cookie, for what a page can't be made to do:
    a POST without its token, a button a read key's page still shows."""
    cookie = browser.get_cookie(COOKIE)
    assert cookie is not None
    return httpx.Client(base_url=url, headers={"Cookie": f"{COOKIE}={cookie['value']}"})


def test_a_forged_or_read_only_text_sends_nothing(
    gateway_run: str,
    browser: webdriver.Chrome,
    issued_key: accounts.IssuedKey,
    read_key: accounts.IssuedKey,
) -> None:
    with httpx.Client(
        base_url=gateway_run, headers={"Authorization": f"Bearer {issued_key.secret}"}
    ) as api:
        assert api.post("/v1/numbers", json={"number": OUR_NUMBER}).status_code == 201
    text = {"phone": LEAD, "to": OUR_NUMBER, "body": "hello"}
    live = f"/console/dev-phone/live?phone={LEAD}"

    sign_in(browser, gateway_run, read_key.secret)
    wait_for(browser, "ledger")
    with _session(gateway_run, browser) as reader:
        page = reader.get(f"/console/dev-phone?phone={LEAD}")
        assert page.status_code == 200 and 'id="phone"' in page.text  # a read key may look
        refused = reader.post("/console/dev-phone/text", data={**text, "csrf": _csrf(page.text)})
        assert refused.status_code == 403 and "scope is read" in refused.text
        for action in ("hand", "clock", "human", "press", "hangup"):
            assert reader.post(f"/console/dev-phone/{action}").status_code == 403, action
        assert "No texts yet." in reader.get(live).text
    browser.delete_all_cookies()

    sign_in(browser, gateway_run, issued_key.secret)
    wait_for(browser, "ledger")
    with _session(gateway_run, browser) as writer:
        forged = writer.post("/console/dev-phone/text", data=text)  # no CSRF token
        assert forged.status_code == 403
        assert "No texts yet." in writer.get(live).text
        bad = writer.post(
            "/console/dev-phone/text",
            data={
                **text,
                "to": "+14155550199",
                "csrf": _csrf(writer.get("/console/dev-phone").text),
            },
        )
        assert bad.status_code == 400 and "not one of this account's numbers" in bad.text
        assert "No texts yet." in writer.get(live).text
    # The same text with the page's own form is sent: the refusals above were about them.
    browser.get(f"{gateway_run}/console/dev-phone?phone={LEAD}")
    wait_for(browser, "body")
    browser.find_element(By.ID, "body").send_keys("hello")
    browser.find_element(By.ID, "send").click()
    wait_for(browser, "notice")
    _until_text(browser, "hello")


def test_with_twilio_credentials_there_is_no_dev_phone(
    settings: Settings, engine: AsyncEngine, issued_key: accounts.IssuedKey
) -> None:
    live = settings.model_copy(
        update={"twilio_account_sid": "AC" + "0" * 32, "twilio_auth_token": "x" * 32}
    )
    assert not live.uses_sandbox
    with serve_in_thread(create_app(live)) as url, httpx.Client(base_url=url) as client:
        form = client.get("/console/sign-in")
        token = form.text.split('name="csrf" value="')[1].split('"')[0]
        signed = client.post("/console/sign-in", data={"csrf": token, "key": issued_key.secret})
        assert signed.status_code in (200, 303)
        assert "Dev phone" not in client.get("/console/compliance").text
        for path in ("/console/dev-phone", f"/console/dev-phone/live?phone={LEAD}"):
            assert client.get(path).status_code == 404, path
        token = _csrf(client.get("/console/compliance").text)  # a valid form: still no phone
        for action in ("clock", "text", "hand", "human", "machine", "press", "hangup"):
            data = {"csrf": token, "seconds": "86400", "phone": LEAD, "body": "x"}
            assert client.post(f"/console/dev-phone/{action}", data=data).status_code == 404
        assert now() - datetime.now(UTC) < timedelta(hours=1)  # the clock did not move


REP_PHONE = "+14155550140"
# A play that just waits (it stays running, as a party line needs), like `gateway demo`'s.
HOLD = """\
name: Hold
steps:
  - id: hold
    kind: wait
    duration: 1d
"""
# Bounds for a person at a loaded machine's page, not claims: the rep's phone rings a minute,
# and no second rep or retry is tried meanwhile.
PARTY_LINE_POLICY = {
    "rep_answer_timeout": 60,
    "max_rep_attempts": 1,
    "lead_retries": 0,
    "whisper_timeout": 30,
}


def _answer_as_a_person(browser: webdriver.Chrome, digits: str) -> None:
    """Type the keys to press and answer the ringing call, in the list live.js refreshes: once
    the field has the focus, live.js leaves the list alone; before, it may replace it."""

    def attempt(b: webdriver.Chrome) -> bool:
        try:
            field = b.find_element(By.CSS_SELECTOR, "#calls input[id^='answer-digits-']")
            field.click()
            field.send_keys(digits)
            b.find_element(By.CSS_SELECTOR, "#calls .answer-human").click()
        except StaleElementReferenceException:
            return False
        return True

    WebDriverWait(browser, SLOW, ignored_exceptions=[NoSuchElementException]).until(attempt)


def _call_line(browser: webdriver.Chrome) -> str:
    found = browser.execute_script(
        "const c = document.querySelector('#calls .call'); return c ? c.textContent : ''"
    )
    return " ".join(str(found).split())


def test_the_dev_phone_answers_a_party_line_as_the_rep(
    browser: webdriver.Chrome, gateway_run: str, issued_key: accounts.IssuedKey
) -> None:
    lead = _lead_in_calling_hours()
    api = httpx.Client(
        base_url=gateway_run, headers={"Authorization": f"Bearer {issued_key.secret}"}, timeout=30
    )
    with api:
        assert api.post("/v1/numbers", json={"number": OUR_NUMBER}).status_code == 201
        rep = api.post("/v1/reps", json={"name": "Rita", "phone": REP_PHONE})
        assert rep.status_code == 201, rep.text
        rep_id = rep.json()["id"]
        published = api.put(
            "/v1/playbooks/hold", content=HOLD, headers={"Content-Type": "application/yaml"}
        )
        assert published.status_code == 201, published.text
        body = {"playbook_id": "hold", "lead": {"phone": lead, "first_name": "Ann"}}
        created = api.post("/v1/plays", json=body)
        assert created.status_code == 201, created.text
        play_id = created.json()["id"]

        # The rep's phone, on the page, rings here until answered.
        sign_in(browser, gateway_run, issued_key.secret)
        wait_for(browser, "ledger")
        browser.find_element(By.ID, "nav-dev-phone").click()
        wait_for(browser, "pick")
        browser.find_element(By.CSS_SELECTOR, f"#pick option[value='{REP_PHONE}']").click()
        browser.find_element(By.ID, "open-picked").click()
        wait_for(browser, "by-hand")
        browser.find_element(By.ID, "by-hand").click()
        # The save reloads the page: the box is asked on the new page, never the old one (which
        # Chromium can answer with "Node with given id does not belong to the document").
        click_to_new_page(browser, browser.find_element(By.ID, "save-hand"))
        wait_for(browser, "by-hand")
        WebDriverWait(browser, WAIT).until(lambda b: b.find_element(By.ID, "by-hand").is_selected())

        started = api.post(f"/v1/plays/{play_id}/party-line", json={"policy": PARTY_LINE_POLICY})
        assert started.status_code in (200, 201, 202), started.text
        line_id = started.json()["id"]

        # The lead's phone (scripted: a person answers) is called first, then the rep's rings
        # on the page; the rep answers and presses 1, as the whisper asks.
        WebDriverWait(browser, SLOW).until(lambda b: "ringing" in _call_line(b))
        assert f"From {OUR_NUMBER}" in _call_line(browser)
        sid = str(browser.execute_script("return document.querySelector('#calls .call').id"))
        with _session(gateway_run, browser) as web:
            token = _csrf(web.get("/console/dev-phone").text)
            form = {"csrf": token, "phone": REP_PHONE, "sid": sid.removeprefix("call-")}
            refused = web.post("/console/dev-phone/human", data={**form, "digits": "1x"})
            assert refused.status_code == 400 and "digits" in refused.text
            assert "ringing" in web.get(f"/console/dev-phone/live?phone={REP_PHONE}").text
        _answer_as_a_person(browser, "1")
        WebDriverWait(browser, SLOW).until(lambda b: "on a conference call" in _call_line(b))
        assert "in-progress" in _call_line(browser)

        def connected(_b: webdriver.Chrome) -> bool:
            return bool(api.get(f"/v1/party-lines/{line_id}").json()["connected_rep_id"])

        WebDriverWait(browser, SLOW).until(connected)  # the gateway hears of it by callback
        line = api.get(f"/v1/party-lines/{line_id}").json()
        assert line["connected_rep_id"] == rep_id
        assert [leg["role"] for leg in line["legs"]] == ["lead", "rep"]
        assert [leg["number"] for leg in line["legs"]] == [lead, REP_PHONE]

        # The rep hangs up on the page: the call and the party line end, completed.
        browser.find_element(By.CSS_SELECTOR, "#calls .hangup").click()
        WebDriverWait(browser, SLOW).until(lambda b: "completed" in _call_line(b))

        def ended(_b: webdriver.Chrome) -> bool:
            return bool(api.get(f"/v1/party-lines/{line_id}").json()["ended_at"])

        WebDriverWait(browser, SLOW).until(ended)
        line = api.get(f"/v1/party-lines/{line_id}").json()
        assert (line["end_reason"], line["connected_rep_id"]) == ("completed", rep_id)
        labels = [a["label"] for a in api.get(f"/v1/plays/{play_id}").json()["activities"]]
        assert "party_line_completed" in labels
