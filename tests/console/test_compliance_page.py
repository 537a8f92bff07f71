"""The Compliance page with a `compliance` key in a real browser: the ledger searched by channel
and source through `GET /v1/opt-outs`, a manual opt-out with who took it and a note through
`POST /v1/opt-outs`, and the streamed CSV and JSON-lines exports; bad input shows its error and
records nothing."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Iterator

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import accounts, optouts
from gateway.app import create_app
from gateway.console.sessions import COOKIE
from gateway.db import create_engine, session_factory, transaction
from gateway.models import Channel, KeyScope, LedgerEvent, LedgerSource
from gateway.settings import Settings
from tests.support.console import WAIT, sign_in, wait_for
from tests.support.servers import serve_in_thread

TEXTED_STOP = "+14155550111"
CALLED = "+14155550122"
TAKEN = "+14155550133"


@pytest.fixture
def console(settings: Settings, engine: AsyncEngine, browser: webdriver.Chrome) -> Iterator[str]:
    with serve_in_thread(create_app(settings)) as url:
        yield url


@pytest.fixture
def compliance_key(settings: Settings) -> accounts.IssuedKey:
    """A `compliance` key of an account whose ledger holds a texted STOP and a spoken opt-out,
    and another account's event on the same channel and source, which must never show."""

    async def make() -> accounts.IssuedKey:
        engine = create_engine(settings.database)
        try:
            async with transaction(session_factory(engine)) as session:
                account, _full = await accounts.create_account(session, "Acme Lending")
                other, _other_key = await accounts.create_account(session, "Other Co")
                key = await accounts.create_key(session, account.id, "officer", KeyScope.COMPLIANCE)
                for account_id, phone, channel, source in (
                    (account.id, TEXTED_STOP, Channel.SMS, LedgerSource.KEYWORD),
                    (account.id, CALLED, Channel.VOICE, LedgerSource.PHRASE),
                    (other.id, "+14155550144", Channel.SMS, LedgerSource.KEYWORD),
                ):
                    await optouts.record(
                        session,
                        account_id=account_id,
                        phone=phone,
                        event=LedgerEvent.OPT_OUT,
                        channel=channel,
                        source=source,
                    )
            return key
        finally:
            await engine.dispose()

    return asyncio.run(make())


def _phones(browser: webdriver.Chrome) -> list[str]:
    rows = browser.find_elements(By.CSS_SELECTOR, "#ledger tbody tr")
    return [row.find_elements(By.TAG_NAME, "td")[1].text for row in rows]


def _search(browser: webdriver.Chrome, channel: str, source: str) -> None:
    Select(browser.find_element(By.ID, "channel")).select_by_value(channel)
    Select(browser.find_element(By.ID, "source")).select_by_value(source)
    browser.find_element(By.ID, "search").click()
    WebDriverWait(browser, WAIT).until(ec.url_contains(f"channel={channel}&source={source}"))
    wait_for(browser, "ledger")


def test_a_compliance_key_searches_records_and_exports(
    browser: webdriver.Chrome, console: str, compliance_key: accounts.IssuedKey
) -> None:
    sign_in(browser, console, compliance_key.secret)
    wait_for(browser, "ledger")
    assert _phones(browser) == [TEXTED_STOP, CALLED]  # not the other account's
    # The nav links only to what the key may open: the Compliance page, nothing else.
    nav = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "nav a")]
    assert nav == ["Compliance"]

    _search(browser, "sms", "keyword")
    assert _phones(browser) == [TEXTED_STOP]
    _search(browser, "voice", "keyword")
    assert _phones(browser) == []
    _search(browser, "", "phrase")
    assert _phones(browser) == [CALLED]

    # A manual opt-out, by keyboard-reachable form: who took it and a note.
    browser.find_element(By.ID, "manual-phone").send_keys("(415) 555-0133")
    Select(browser.find_element(By.ID, "manual-channel")).select_by_value("voice")
    browser.find_element(By.ID, "manual-actor").send_keys("jane@acme.example")
    browser.find_element(By.ID, "manual-note").send_keys("asked on the phone")
    browser.find_element(By.ID, "record-opt-out").click()
    wait_for(browser, "recorded")
    assert _phones(browser) == [TAKEN]  # the ledger shows the phone just recorded
    row = browser.find_element(By.CSS_SELECTOR, "#ledger tbody tr").text
    assert "jane@acme.example" in row and "asked on the phone" in row and "api" in row

    # Both exports stream the API's own answer (no length known up front) with the session.
    cookie = browser.get_cookie(COOKIE)
    assert cookie is not None
    headers = {"Cookie": f"{COOKIE}={cookie['value']}"}
    csv_href = browser.find_element(By.ID, "export").get_attribute("href")
    jsonl_href = browser.find_element(By.ID, "export-jsonl").get_attribute("href")
    assert csv_href and jsonl_href
    with httpx.stream("GET", csv_href, headers=headers) as exported:
        assert exported.status_code == 200
        assert exported.headers["content-type"].startswith("text/csv")
        assert "content-length" not in exported.headers
        rows = list(csv.DictReader(io.StringIO(exported.read().decode())))
    assert [(r["phone"], r["actor"], r["note"]) for r in rows] == [
        (TAKEN, "jane@acme.example", "asked on the phone")
    ]
    with httpx.stream("GET", jsonl_href, headers=headers) as exported:
        assert exported.headers["content-type"].startswith("application/x-ndjson")
        assert "content-length" not in exported.headers
        lines = [json.loads(line) for line in exported.read().decode().splitlines()]
    assert [line["phone"] for line in lines] == [TAKEN]

    # The whole ledger's JSON lines: this account's three, never the other's.
    everything = httpx.get(console + "/console/compliance/export?format=jsonl", headers=headers)
    assert [json.loads(line)["phone"] for line in everything.text.splitlines()] == [
        TEXTED_STOP,
        CALLED,
        TAKEN,
    ]
    # Nothing else: a conversation page is refused to this key.
    refused = httpx.get(console + "/console/plays", headers=headers)
    assert refused.status_code == 403


def test_bad_input_shows_its_error_and_records_nothing(
    browser: webdriver.Chrome, console: str, compliance_key: accounts.IssuedKey
) -> None:
    sign_in(browser, console, compliance_key.secret)
    wait_for(browser, "ledger")
    browser.find_element(By.ID, "manual-phone").send_keys("12")
    browser.find_element(By.ID, "manual-actor").send_keys("jane")
    browser.find_element(By.ID, "record-opt-out").click()
    wait_for(browser, "manual-error")
    assert "phone" in browser.find_element(By.ID, "manual-error").text.lower()
    assert len(_phones(browser)) == 2  # still the two events
    # A source the API does not know, typed into the address: its 422, shown on the page.
    browser.get(console + "/console/compliance?source=rumour")
    wait_for(browser, "ledger-error")
    assert "source" in browser.find_element(By.ID, "ledger-error").text
