"""Console live page memory (issue 17, item 2): a play page left open with live updates must not
leak memory in the browser or the server.

    .venv/bin/python -m bench.console_live [--minutes 10] [--every 1] [--sample-seconds 30]

Starts `gateway run` on its embedded defaults (SQLite, embedded Redis, the built-in Twilio
sandbox) in a temporary DATA_DIR on a free 127.0.0.1 port, sets up through the CLI, the API and
the sandbox what a user would (an account and its key, a number, the example mortgage playbook,
a lead whose play is running: she answers the first question, then a person takes over, so the
play stays running and every later text of hers is recorded in it), signs in with headless
Chromium (the system's chromium and chromedriver) and opens the play's page.

The page's `#live` element refreshes itself from `/console/plays/{id}/entries` (live.js). live.js
reads `data-live-every` once, when it starts, and the page says 3 s; to pack more refreshes into
the run, a script given to Chromium before the page loads (CDP
`Page.addScriptToEvaluateOnNewDocument`) sets it to `--every` (default 1, live.js's minimum) when
the document becomes interactive, which is before the deferred live.js runs. The served
fragment requests are counted in the gateway's access log, so the rate is measured, not assumed.

For `--minutes`, the lead texts the number once a minute (through the sandbox), and every
`--sample-seconds` the script records, after a forced garbage collection in the page (CDP
`HeapProfiler.collectGarbage`): the page's JS heap and its DOM nodes (`Performance.getMetrics`:
JSHeapUsedSize, Nodes, JSEventListeners), the nodes in the document (so nodes kept alive outside
it show), the texts on the page, the RSS of the page's renderer process, and the RSS of the
gateway process and of its embedded redis-server (/proc/<pid>/status VmRSS). It prints a table
and a verdict: the growth of each figure between the 2nd sample and the last (the 1st is taken
while the page and the processes are still warming up).

The gateway runs with LOG_LEVEL=INFO (the other benchmarks use WARNING) because its access log
is the count of fragment requests. Everything it starts is stopped by PID; the temporary
directory is removed (BENCH_KEEP=1 keeps it and prints where).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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
from bench.support import EXAMPLE_PLAYBOOK, machine

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Runs in the page before its own scripts: live.js (deferred) reads data-live-every once, when
# it starts, which is after the document became interactive.
OVERRIDE = """
document.addEventListener("readystatechange", function () {
  if (document.readyState !== "interactive") { return; }
  var found = document.querySelectorAll("[data-live-src]");
  for (var i = 0; i < found.length; i += 1) { found[i].setAttribute("data-live-every", "%s"); }
});
"""
# What the page holds besides the metrics: nodes in the document (a TreeWalker over every kind
# of node), the texts shown, and how long ago live.js last had a good answer.
PAGE_STATE = """
var walker = document.createTreeWalker(document, NodeFilter.SHOW_ALL);
var count = 1;
while (walker.nextNode()) { count += 1; }
var live = document.getElementById("live");
var at = live.getAttribute("data-live-at");
return {
  nodes: count,
  texts: document.querySelectorAll("#messages li.bubble").length,
  age: at ? (Date.now() - Date.parse(at)) / 1000 : -1,
  error: live.getAttribute("data-live-error"),
  every: live.getAttribute("data-live-every"),
  hidden: document.hidden
};
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def redis_pid(gateway: Gateway) -> int | None:
    """The embedded redis-server `gateway run` started (its child)."""
    for pid in children(gateway.pid):
        if "redis-server" in cmdline(pid):
            return pid
    return None


def served(gateway: Gateway, path: str) -> int:
    """Requests for `path` the access log shows answered 200."""
    pattern = re.compile(rf'"GET {re.escape(path)}(\?\S*)? HTTP/1\.1" 200')
    with gateway.log_path.open(errors="replace") as lines:
        return sum(1 for line in lines if pattern.search(line))


def rss_kb(pid: int) -> int:
    """VmRSS of a process in kB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    """Every descendant of `pid` (Linux /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as raw:
            return raw.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class Scene:
    key: str
    play_id: str
    lead_says: Callable[[str], None]
    texts: Callable[[], int]


def set_up(gateway: Gateway) -> Scene:
    key, account_id = create_account(gateway, "Acme Lending")
    sid, token = gateway.cli("sandbox", "credentials", "--curl").stdout.strip().split(":", 1)
    area = pick_area_code(gateway, account_id)
    lead_phone = f"+1{area}5550123"

    api = Api(gateway.url, key)
    number = f"+1{area}5550100"
    api.call("POST", "/v1/numbers", 201, json={"number": number})
    api.call(
        "PUT",
        "/v1/playbooks/mortgage-qualification",
        201,
        content=EXAMPLE_PLAYBOOK.read_bytes(),
        headers={"Content-Type": "application/yaml"},
    )
    started = api.call(
        "POST",
        "/v1/plays",
        201,
        json={
            "playbook_id": "mortgage-qualification",
            "settings": {"partner_name": "Acme Lending"},
            "lead": {
                "phone": lead_phone,
                "first_name": "Maria",
                "last_name": "Alvarez",
                "consent": {
                    "captured_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
                    "source": "mortgage form",
                    "text": "I agree to receive texts from Acme Lending. Reply STOP to opt out.",
                },
            },
        },
    )
    play_id = started["id"]
    sandbox = httpx.Client(base_url=gateway.url, auth=(sid, token), timeout=30)

    def lead_says(body: str) -> None:
        sent = sandbox.post(
            "/sandbox/_sandbox/sms", json={"from": lead_phone, "to": number, "body": body}
        )
        if sent.status_code >= 300:
            raise RuntimeError(f"sandbox sms: {sent.status_code} {sent.text}")

    def messages() -> list[dict[str, Any]]:
        return list(api.call("GET", f"/v1/plays/{play_id}")["messages"])

    def sent() -> int:
        return sum(
            1
            for m in messages()
            if m["direction"] == "outbound" and m["status"] not in ("queued", "scheduled")
        )

    wait_until("the first text", lambda: sent() >= 1)
    lead_says("Yes please")
    wait_until("the second question", lambda: sent() >= 2)
    # A person takes over: the play stays running, paused, and records every later text.
    api.call(
        "POST",
        f"/v1/plays/{play_id}/messages",
        201,
        json={"body": "Hi Maria, Dana here. Any questions so far?", "sender": "Dana"},
    )
    wait_until("the person's text", lambda: sent() >= 3)
    lead_says("Not yet, still comparing rates")
    wait_until("the lead's text to be recorded", lambda: len(messages()) >= 5)
    return Scene(key, play_id, lead_says, lambda: len(messages()))


def chromium() -> webdriver.Chrome:
    options = Options()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # as root (CI), Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        # No spare renderer kept warm for a next tab: the page's renderer is then the only one
        # besides the browser's own UI (--top-chrome-webui), so its RSS is the page's. No
        # back/forward cache: it keeps the page before this one (sign-in's target) alive in the
        # same renderer for minutes, and its nodes and heap would count, then vanish.
        "--disable-features=SpareRendererForSitePerProcess,BackForwardCache",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


@dataclass
class Sample:
    at: float  # s since the page was opened
    served: int  # fragment requests answered 200 so far
    live_age: float  # s since live.js's last good answer
    texts: int  # texts shown on the page
    heap: float  # JSHeapUsedSize after GC, bytes
    nodes: int  # Performance.getMetrics Nodes after GC
    in_document: int  # nodes reachable in the document
    listeners: int  # JSEventListeners
    renderer_kb: int  # RSS of the page's renderer process
    gateway_kb: int
    redis_kb: int

    @property
    def outside(self) -> int:
        """Nodes the renderer holds outside the document: a constant share (user-agent shadow
        trees and the like) plus any removed node still referenced, which is what a leak grows."""
        return self.nodes - self.in_document


def sample(
    driver: webdriver.Chrome, gateway: Gateway, path: str, chromedriver_pid: int, at: float
) -> Sample:
    driver.execute_cdp_cmd("HeapProfiler.collectGarbage", {})
    answer = driver.execute_cdp_cmd("Performance.getMetrics", {})
    metrics = {m["name"]: m["value"] for m in answer["metrics"]}
    state = driver.execute_script(PAGE_STATE)
    if state["error"] or state["hidden"]:
        raise RuntimeError(f"live.js is not refreshing: {state}")
    renderers = [
        p
        for p in children(chromedriver_pid)
        if "--type=renderer" in cmdline(p) and "--top-chrome-webui" not in cmdline(p)
    ]
    if len(renderers) != 1:
        log(f"{len(renderers)} renderers besides the browser's UI: their RSS is summed")
    redis = redis_pid(gateway)
    return Sample(
        at=at,
        served=served(gateway, path),
        live_age=float(state["age"]),
        texts=int(state["texts"]),
        heap=float(metrics["JSHeapUsedSize"]),
        nodes=int(metrics["Nodes"]),
        in_document=int(state["nodes"]),
        listeners=int(metrics["JSEventListeners"]),
        renderer_kb=sum(rss_kb(p) for p in renderers),
        gateway_kb=rss_kb(gateway.pid),
        redis_kb=rss_kb(redis) if redis else 0,
    )


HEADER = (
    f"{'t (s)':>6} {'served':>7} {'live age':>8} {'texts':>5} {'JS heap MB':>10} "
    f"{'nodes':>6} {'in doc':>6} {'outside':>7} {'listeners':>9} "
    f"{'renderer MB':>11} {'gateway MB':>10} {'redis MB':>8}"
)


def row(s: Sample) -> str:
    return (
        f"{s.at:6.0f} {s.served:7d} {s.live_age:8.1f} {s.texts:5d} {s.heap / 1e6:10.3f} "
        f"{s.nodes:6d} {s.in_document:6d} {s.outside:7d} {s.listeners:9d} "
        f"{s.renderer_kb / 1024:11.1f} {s.gateway_kb / 1024:10.1f} {s.redis_kb / 1024:8.1f}"
    )


def verdict(first: Sample, middle: Sample, last: Sample, every: float) -> str:
    refreshes = last.served - first.served
    span = last.at - first.at
    rate = refreshes / span if span else 0.0
    default_minutes = refreshes * 3 / 60  # the page's own 3 s interval

    def grew(a: float, b: float, unit: str, scale: float) -> str:
        pct = (b - a) / a * 100 if a else 0.0
        return f"{(b - a) / scale:+.2f} {unit} ({pct:+.1f}%)"

    return (
        f"verdict: from t={first.at:.0f}s to t={last.at:.0f}s, {refreshes} fragment refreshes "
        f"({rate:.2f}/s at data-live-every={every:g}; {default_minutes:.0f} min of the page's 3 s "
        f"default), {last.texts - first.texts} new texts on the page: "
        f"JS heap {grew(first.heap, last.heap, 'MB', 1e6)}, "
        f"DOM nodes {last.nodes - first.nodes:+d} "
        f"(in document {last.in_document - first.in_document:+d}, "
        f"outside it {last.outside - first.outside:+d}), "
        f"listeners {last.listeners - first.listeners:+d}, "
        f"renderer RSS {grew(first.renderer_kb, last.renderer_kb, 'MB', 1024)}, "
        f"gateway RSS {grew(first.gateway_kb, last.gateway_kb, 'MB', 1024)} "
        f"(in the second half, from t={middle.at:.0f}s: "
        f"{grew(middle.gateway_kb, last.gateway_kb, 'MB', 1024)}), "
        f"redis RSS {grew(first.redis_kb, last.redis_kb, 'MB', 1024)}"
    )


def soak(
    gateway: Gateway, scene: Scene, minutes: float, every: float, sample_seconds: float
) -> list[Sample]:
    driver = chromium()
    browser_pids: list[int] = []
    try:
        chromedriver_pid = driver.service.process.pid
        browser_pids = children(chromedriver_pid)
        driver.execute_cdp_cmd("Performance.enable", {})
        driver.execute_cdp_cmd("HeapProfiler.enable", {})
        override = {"source": OVERRIDE % every}
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", override)
        console = gateway.url + "/console"
        driver.get(console + "/sign-in")
        WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.ID, "key")))
        driver.find_element(By.ID, "key").send_keys(scene.key + Keys.ENTER)
        WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.ID, "nav-plays")))
        path = f"/console/plays/{scene.play_id}/entries"
        served_before = served(gateway, path)
        driver.get(f"{console}/plays/{scene.play_id}")
        WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.ID, "live")))
        opened = time.monotonic()
        # The first refresh proves live.js started (and at what interval, checked below).
        WebDriverWait(driver, 30).until(
            lambda d: d.find_element(By.ID, "live").get_attribute("data-live-at")
        )
        log(f"play page open: {scene.play_id}; live every {every:g} s; {minutes:g} min")
        print(HEADER, flush=True)
        samples: list[Sample] = []
        end = opened + minutes * 60
        next_sample, next_text, said = opened, opened + 60, 0
        while True:
            now = time.monotonic()
            if now >= next_text and now < end:
                said += 1
                scene.lead_says(f"Text {said}: still comparing rates, will decide soon")
                next_text += 60
            if now >= next_sample:
                taken = sample(driver, gateway, path, chromedriver_pid, now - opened)
                taken.served -= served_before
                samples.append(taken)
                print(row(taken), flush=True)
                if len(samples) == 2:
                    # live.js must be polling at the set interval (not the page's 3 s).
                    rate = taken.served / taken.at
                    if rate < 0.5 / every:
                        raise RuntimeError(f"{rate:.2f} refreshes/s: the interval was not set")
                if now >= end:
                    break
                next_sample = min(next_sample + sample_seconds, end)
            time.sleep(max(0.0, min(next_sample, next_text) - time.monotonic()))
        return samples
    finally:
        driver.quit()
        # quit() ends Chromium through chromedriver; whatever outlived it is ended by PID.
        for pid in browser_pids:
            if rss_kb(pid):
                os.kill(pid, signal.SIGKILL)


def stop_on_term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # so the `finally`s stop what was started


def main() -> int:
    signal.signal(signal.SIGTERM, stop_on_term)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument(
        "--every", type=float, default=1.0, help="data-live-every, s (live.js minimum: 1)"
    )
    parser.add_argument("--sample-seconds", type=float, default=30.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="gw-bench-live-"))
    print(f"# {machine()}; chromium {CHROMIUM}; gateway run on embedded defaults", flush=True)
    try:
        # INFO: uvicorn's access log, a line per request, is how the refreshes are counted.
        with gateway_run(workdir, log_level="INFO") as gateway:
            scene = set_up(gateway)
            log(f"set up: play {scene.play_id} with {scene.texts()} texts")
            samples = soak(gateway, scene, args.minutes, args.every, args.sample_seconds)
            if len(samples) >= 3:
                middle = samples[1 + (len(samples) - 2) // 2]
                print(verdict(samples[1], middle, samples[-1], args.every), flush=True)
    finally:
        if os.environ.get("BENCH_KEEP") == "1":
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
