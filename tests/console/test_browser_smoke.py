"""The page tests' browser works: Chromium loads a page from a real server on 127.0.0.1."""

from __future__ import annotations

from selenium import webdriver
from selenium.webdriver.common.by import By
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests.support.servers import serve_in_thread


async def _page(_request: object) -> HTMLResponse:
    return HTMLResponse("<!doctype html><title>t</title><h1 id=greeting>hello</h1>")


def test_chromium_reads_a_page_from_a_local_server(browser: webdriver.Chrome) -> None:
    app = Starlette(routes=[Route("/", _page)])
    with serve_in_thread(app) as url:
        browser.get(url + "/")
        assert browser.find_element(By.ID, "greeting").text == "hello"
        assert browser.title == "t"
