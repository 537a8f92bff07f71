"""Browser helpers for the console's page tests: wait for an element, sign in with an API key."""

from __future__ import annotations

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

WAIT = 20  # seconds: a bound for a page to arrive on a loaded machine, not a timing claim


def wait_for(browser: webdriver.Chrome, element_id: str) -> None:
    WebDriverWait(browser, WAIT).until(ec.presence_of_element_located((By.ID, element_id)))


def sign_in(browser: webdriver.Chrome, url: str, secret: str) -> None:
    browser.get(url + "/console/")
    wait_for(browser, "key")
    # By keyboard: type the key and press Enter in its field.
    browser.find_element(By.ID, "key").send_keys(secret + Keys.ENTER)
