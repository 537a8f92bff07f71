"""In a real browser: /docs renders the API reference with the vendored Redoc, everything from
this server and nothing refused by the page's Content-Security-Policy; / links to the console
and the docs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import create_app
from gateway.settings import Settings
from tests.support.servers import serve_in_thread

# Runs before the page's own scripts (CDP-injected scripts are not subject to the page's CSP):
# records every violation the policy reports, so the test can say none happened.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(e.violatedDirective + " " + e.blockedURI);
});
"""

REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture
def server(settings: Settings, engine: AsyncEngine) -> Iterator[str]:
    with serve_in_thread(create_app(settings)) as url:
        yield url


@pytest.fixture
def watched(browser: webdriver.Chrome) -> Iterator[webdriver.Chrome]:
    """The browser, recording CSP violations on every page it loads (for this test only)."""
    added = browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_VIOLATIONS}
    )
    try:
        yield browser
    finally:
        browser.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument", {"identifier": added["identifier"]}
        )


def test_docs_renders_the_reference_from_this_server_only(
    watched: webdriver.Chrome, server: str
) -> None:
    watched.get(server + "/docs")
    wait = WebDriverWait(watched, 30)
    # Redoc has fetched /openapi.json and rendered the operations (their summaries are titles).
    wait.until(
        expected_conditions.presence_of_element_located(
            (By.XPATH, "//h2[normalize-space(.)='Start a play']")
        )
    )
    text = watched.find_element(By.TAG_NAME, "body").text
    assert "Partyline gateway API" in text and "Add a rep" in text
    # The example request bodies are shown as request samples.
    assert "Request samples" in text
    resources = watched.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert any(name.endswith("/openapi.json") for name in resources)
    # Every request went to this server, but the footer logo's, which the policy refused.
    elsewhere = [n for n in resources if not n.startswith(server + "/")]
    assert set(elsewhere) <= {REDOCLY_LOGO}, resources
    # The one thing refused: Redoc's "API docs by Redocly" footer logo, an image on Redocly's
    # CDN. The policy keeps the page from fetching it; nothing else was refused.
    violations = watched.execute_script("return window.__violations")
    assert set(violations) <= {"img-src " + REDOCLY_LOGO}, violations


def test_home_page_links_to_the_console_and_the_docs(
    watched: webdriver.Chrome, server: str
) -> None:
    watched.get(server + "/")
    assert watched.find_element(By.ID, "console").get_attribute("href") == server + "/console/"
    docs = watched.find_element(By.ID, "docs")
    assert docs.get_attribute("href") == server + "/docs"
    assert watched.execute_script("return window.__violations") == []
    docs.click()
    WebDriverWait(watched, 30).until(expected_conditions.url_to_be(server + "/docs"))
