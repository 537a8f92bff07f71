"""Screenshots of the console for the README, made from nothing.

    .venv/bin/python -m docs.screenshots   (from the repository: it shares bench/gateway_process.py)

starts `gateway run` on its embedded defaults (SQLite, embedded Redis, the built-in Twilio
sandbox) in a temporary DATA_DIR on a free 127.0.0.1 port, sets up what a new user would, through
the CLI and the public API only (an account and its key, a number, the example mortgage playbook,
two reps, a source rule, a webhook to a local receiver, leads whose replies come in through the
sandbox, opt-outs), then signs in with headless Chromium (the system's chromium and chromedriver,
as tests/support/browser.py) and saves PNGs of the main pages into docs/console/. It stops the
gateway and the receiver it started and removes the temporary directory.

The data is made up: fictional names, 555-01xx numbers, example.com addresses.
"""

from __future__ import annotations

import http.server
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from bench.gateway_process import (
    Api,
    Gateway,
    create_account,
    gateway_run,
    pick_area_code,
    wait_until,
)

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "console"
PLAYBOOK = REPO / "examples" / "mortgage-qualification.yaml"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WIDE, NARROW = 1280, 360
MAX_HEIGHT = 2200  # px: a long page is cut here (the top of a page is what a reader needs)


class _Receiver(http.server.BaseHTTPRequestHandler):
    """The business's CRM endpoint for the webhook: answers every delivery 200."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = b'{"received": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@contextmanager
def webhook_receiver() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/gateway"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class Scene:
    """What the screenshots show: ids and phones the pages are opened at."""

    key: str
    play_id: str
    playbook_id: str
    webhook_id: str
    lead_id: str
    lead_phone: str
    opted_out_phone: str


def set_up(gateway: Gateway, webhook_url: str) -> Scene:
    key, account_id = create_account(gateway, "Acme Lending")
    credentials = gateway.cli("sandbox", "credentials", "--curl").stdout.strip()
    sid, token = credentials.split(":", 1)
    area = pick_area_code(gateway, account_id)

    api = Api(gateway.url, key)
    number = f"+1{area}5550100"
    api.call("POST", "/v1/numbers", 201, json={"number": number})
    api.call(
        "PUT",
        "/v1/playbooks/mortgage-qualification",
        201,
        content=PLAYBOOK.read_bytes(),
        headers={"Content-Type": "application/yaml"},
    )
    dana = api.call(
        "POST",
        "/v1/reps",
        201,
        json={"name": "Dana Whitfield", "phone": f"+1{area}5550142", "email": "dana@example.com"},
    )
    marcus = api.call(
        "POST",
        "/v1/reps",
        201,
        json={"name": "Marcus Bell", "phone": f"+1{area}5550143", "email": "marcus@example.com"},
    )
    api.call("PATCH", f"/v1/reps/{marcus['id']}", json={"available": False})
    api.call(
        "POST",
        "/v1/sources",
        201,
        json={
            "origin": "EverQuote",
            "playbook_id": "mortgage-qualification",
            "distribution": "round_robin",
            "rep_ids": [dana["id"], marcus["id"]],
            "settings": {"partner_name": "Acme Lending"},
        },
    )
    # The receiver is on 127.0.0.1, which webhooks may reach only once the operator allows it.
    gateway.cli("webhooks", "allow-private", "--account", account_id)
    webhook = api.call(
        "POST",
        "/v1/webhooks",
        201,
        json={"url": webhook_url, "description": "CRM: lead activities"},
    )

    sandbox = httpx.Client(base_url=gateway.url, auth=(sid, token), timeout=30)

    def lead_says(phone: str, body: str) -> None:
        sent = sandbox.post(
            "/sandbox/_sandbox/sms", json={"from": phone, "to": number, "body": body}
        )
        if sent.status_code >= 300:
            raise RuntimeError(f"sandbox sms: {sent.status_code} {sent.text}")

    def texts(play_id: str) -> list[dict[str, Any]]:
        play = api.call("GET", f"/v1/plays/{play_id}")
        return list(play["messages"])

    def sent_count(play_id: str) -> int:
        """Texts to the lead that the sandbox took (queued ones are still on their way)."""
        return sum(
            1
            for m in texts(play_id)
            if m["direction"] == "outbound" and m["status"] not in ("queued", "scheduled")
        )

    def play_is(play_id: str, field: str, value: str) -> Callable[[], bool]:
        return lambda: bool(api.call("GET", f"/v1/plays/{play_id}")[field] == value)

    def new_lead(first: str, last: str, phone: str, key_: str) -> tuple[str, str]:
        consent_at = (datetime.now(UTC) - timedelta(minutes=7)).isoformat()
        started = api.call(
            "POST",
            "/v1/leads",
            201,
            json={
                "phone": phone,
                "first_name": first,
                "last_name": last,
                "email": f"{first.lower()}.{last.lower()}@example.com",
                "originators": [{"origin": "EverQuote", "key": key_}],
                "consent": {
                    "captured_at": consent_at,
                    "source": "EverQuote mortgage form",
                    "text": "I agree to receive calls and texts from Acme Lending about my "
                    "mortgage inquiry. Reply STOP to opt out.",
                    "url": "https://www.example.com/mortgage-quote",
                },
            },
        )
        return started["lead"]["id"], started["play"]["id"]

    # A lead who qualifies: the bot's questions and her answers, one after the other.
    lead_phone = f"+1{area}5550123"
    lead_id, play_id = new_lead("Maria", "Alvarez", lead_phone, "eq-20417")

    def all_sent() -> None:
        """Until every text to the lead so far has reached the sandbox, and a second more: a
        person reads the question before answering (the dev phone orders texts by second)."""
        count = len([m for m in texts(play_id) if m["direction"] == "outbound"])
        wait_until("the questions to be sent", lambda: sent_count(play_id) >= count)
        time.sleep(1.1)

    wait_until("the first text", lambda: sent_count(play_id) >= 1)
    for reply, step in (("Yes please", "loan_amount"), ("about 350k", "credit"), ("2", "connect")):
        all_sent()
        lead_says(lead_phone, reply)
        wait_until(f"the answer to {reply!r}", play_is(play_id, "step_id", step))
    all_sent()

    # A lead who says no, and one who texts STOP (the opt-out ledger's keyword entry).
    other_phone = f"+1{area}5550124"
    _, other_play = new_lead("James", "Okafor", other_phone, "eq-20418")
    wait_until("James's first text", lambda: sent_count(other_play) >= 1)
    lead_says(other_phone, "no thanks")
    stop_phone = f"+1{area}5550125"
    _, stop_play = new_lead("Priya", "Shah", stop_phone, "eq-20419")
    wait_until("Priya's first text", lambda: sent_count(stop_play) >= 1)
    lead_says(stop_phone, "STOP")
    wait_until("James's play to end", play_is(other_play, "state", "has_outcome"))
    wait_until("Priya's play to end", play_is(stop_play, "state", "opted_out"))
    # A manual opt-out, as a person on the phone asked.
    api.call(
        "POST",
        "/v1/opt-outs",
        201,
        json={
            "phone": f"+1{area}5550188",
            "channel": "voice",
            "text": "Please take me off your list",
            "actor": "Dana Whitfield",
            "note": "Asked on an inbound call",
        },
    )
    deliveries = f"/v1/webhooks/{webhook['id']}/deliveries"
    wait_until("webhook deliveries", lambda: bool(api.call("GET", deliveries)["data"]))
    return Scene(
        key, play_id, "mortgage-qualification", webhook["id"], lead_id, lead_phone, stop_phone
    )


def chromium() -> webdriver.Chrome:
    options = Options()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # as root (CI), Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={WIDE},900",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


class Camera:
    """Headless Chromium at a given width; saves a page down to its content (or to the bottom
    of one element), never taller than MAX_HEIGHT."""

    def __init__(self, browser: webdriver.Chrome) -> None:
        self.browser = browser
        self.width = WIDE

    def _metrics(self, height: int) -> None:
        metrics = {
            "width": self.width,
            "height": height,
            "deviceScaleFactor": 1,
            "mobile": self.width < 600,
        }
        self.browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)

    def open(self, url: str, ready: str, width: int = WIDE) -> None:
        """Open `url` at `width` px and wait for the element `ready`."""
        self.width = width
        self._metrics(900)
        self.browser.get(url)
        self.wait_for(ready)

    def wait_for(self, element_id: str) -> None:
        WebDriverWait(self.browser, 30).until(ec.presence_of_element_located((By.ID, element_id)))

    def save(
        self, name: str, until: str | None = None, margin: int = 24, most: int = MAX_HEIGHT
    ) -> None:
        """The page as docs/console/`name`.png: to the bottom of the element the CSS selector
        `until` finds (and `margin` px) or of the page."""
        if until:
            script = "return document.querySelector(arguments[0]).getBoundingClientRect().bottom"
            bottom = float(self.browser.execute_script(script, until)) + margin
        else:
            bottom = float(self.browser.execute_script("return document.body.scrollHeight"))
        self._metrics(min(int(bottom), most))
        self.browser.execute_script("window.scrollTo(0, 0)")
        path = OUT / f"{name}.png"
        if not self.browser.save_screenshot(str(path)):
            raise RuntimeError(f"no screenshot of {self.browser.current_url}")
        print(f"{path.relative_to(REPO)}  {path.stat().st_size // 1024} KB")


def take_screenshots(url: str, scene: Scene) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    browser = chromium()
    camera = Camera(browser)
    try:
        console = url + "/console"
        camera.open(console + "/sign-in", "key")
        camera.save("sign-in")
        browser.find_element(By.ID, "key").send_keys(scene.key + Keys.ENTER)
        camera.wait_for("nav-plays")
        camera.open(console + "/plays", "plays-live")
        camera.save("conversations")
        play = f"{console}/plays/{scene.play_id}"
        camera.open(play, "messages")
        camera.save("play", until="#messages")
        camera.open(play, "messages", width=NARROW)
        camera.save("play-360", until="#messages")
        camera.open(f"{console}/playbooks/{scene.playbook_id}", "document")
        camera.save("playbook", most=1150)
        camera.open(console + "/sources", "sources")
        camera.save("source-rules")
        camera.open(console + "/reps", "reps")
        camera.save("reps")
        camera.open(f"{console}/leads/{scene.lead_id}", "lead-summary")
        camera.save("lead")
        camera.open(f"{console}/webhooks/{scene.webhook_id}", "deliveries")
        # Six deliveries are enough to show them (and keep the image small).
        camera.save("webhook", until="#deliveries tbody tr:nth-child(6)", margin=1)
        # The compliance officer asks the gate about the number that texted STOP.
        camera.open(console + "/compliance", "ledger")
        browser.find_element(By.ID, "check-phone").send_keys(scene.opted_out_phone)
        browser.find_element(By.ID, "check").click()
        camera.wait_for("decision")
        camera.save("compliance")
        # The dev phone exists only while the built-in sandbox stands in for Twilio (as here),
        # and only in a gateway that has it: its link in the menu tells.
        if browser.find_elements(By.ID, "nav-dev-phone"):
            phone = urlencode({"phone": scene.lead_phone})
            camera.open(f"{console}/dev-phone?{phone}", "live")
            camera.save("dev-phone")
    finally:
        browser.quit()


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="gateway-screenshots-"))
    try:
        with webhook_receiver() as hook_url, gateway_run(workdir) as gateway:
            scene = set_up(gateway, hook_url)
            take_screenshots(gateway.url, scene)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
