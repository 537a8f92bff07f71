"""A real browser for page tests: headless Chromium from the system's packages, driven by
Selenium through the system's chromedriver (`apt-get install -y chromium chromium-driver`;
.ci/run installs them where missing). No driver is downloaded: there is no internet here.

The `browser` fixture is one Chromium per test session (starting one costs about a second),
with its cookies cleared before each test so no sign-in leaks from one test to the next.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

CHROMIUM = ("chromium", "chromium-browser")
CHROMEDRIVER = "chromedriver"
WINDOW = "1280,900"


def _find(names: tuple[str, ...]) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(
        f"page tests need {names[0]} from the system's packages: apt-get install -y chromium "
        "chromium-driver"
    )


@pytest.fixture(scope="session")
def chromium() -> Iterator[webdriver.Chrome]:
    options = Options()
    options.binary_location = _find(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={WINDOW}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(_find((CHROMEDRIVER,))), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chromium: webdriver.Chrome) -> webdriver.Chrome:
    """The session's Chromium with no cookies, at a blank page. (WebDriver's
    `delete_all_cookies` only clears the current page's site, and about:blank has none: every
    test server is on 127.0.0.1, whose cookies ignore the port, so DevTools clears them all.)"""
    chromium.get("about:blank")
    chromium.execute_cdp_cmd("Network.clearBrowserCookies", {})
    return chromium
