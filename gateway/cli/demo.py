"""`gateway demo party-line`: a party line on a running `gateway run`, told as it happens.

Everything goes through what a customer and Twilio would use: the public API (a number, reps,
a playbook, a play, `POST /v1/plays/{id}/party-line`, `GET /v1/party-lines/{id}`) and the
built-in sandbox's control routes (scripted phones). The sandbox in `gateway run` follows the
wall clock, and so does the gateway, so nothing needs advancing: the calls take as long as
the scripts say (ring, machine detection, whisper, a few seconds of talk).

Quiet hours: the gateway decides by its own clock, in the lead's local time. The demo reads the
server's clock (the `Date` header) and calls a lead whose number is in a zone inside calling
hours right now (`compliance.quiet_hours`, the gate's own rule), so it works at any hour.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import httpx

from compliance import quiet_hours
from gateway.cli.demo_scenario import REP_NAMES, LeadAnswers, Scenario
from gateway.sandbox_credentials import SandboxCredentials
from gateway.settings import SANDBOX_PATH

CONTROL = f"{SANDBOX_PATH}/_sandbox"
PLAYBOOK_ID = "party-line-demo"
# A play that just waits: it stays running (a party line needs one) and sends nothing itself.
PLAYBOOK = """\
name: Party-line demo
description: Keeps a play running for `gateway demo party-line`, which stops it when done.
steps:
  - id: hold
    kind: wait
    duration: 1d
"""
# Fictional 555-01XX numbers (and Ofcom's drama range for London), one per zone, in order of
# preference; the first inside calling hours for the next MARGIN is called.
LEADS: tuple[tuple[str, str], ...] = (
    ("+14155550123", "San Francisco"),
    ("+13125550123", "Chicago"),
    ("+12125550123", "New York"),
    ("+18085550123", "Honolulu"),
    ("+17875550123", "San Juan, Puerto Rico"),
    ("+16715550123", "Hagåtña, Guam"),
    # No US zone is inside 08:00-20:00 from about 10:00 to 12:00 UTC: a London lead then.
    ("+442079460123", "London"),
)
MARGIN = timedelta(minutes=20)
OUR_NUMBERS = tuple(f"+1415555{n:04d}" for n in range(150, 200))
REP_PHONES = tuple(f"+1415555{n:04d}" for n in range(140, 150))
POLL_SECONDS = 0.25


class DemoError(Exception):
    """The demo can't go on; the message is one line for the user."""


@dataclass(frozen=True)
class Lead:
    phone: str
    place: str
    zone: str
    open_until: datetime


def choose_lead(at: datetime) -> Lead:
    """The first candidate lead the gate would let us call at `at` (and for MARGIN after)."""
    for phone, place in LEADS:
        decision = quiet_hours.check(phone, at)
        if decision.allowed and decision.open_until and decision.open_until - at >= MARGIN:
            return Lead(phone, place, decision.zones[0], decision.open_until)
    raise DemoError(f"no demo lead is inside calling hours at {at:%H:%M} UTC")


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(body)[:200]


def _auth(creds: SandboxCredentials | None) -> tuple[str, str] | None:
    return None if creds is None else (creds.account_sid, creds.auth_token)


def check_server(url: str, creds: SandboxCredentials | None) -> datetime:
    """Refuse (DemoError) unless a gateway answers at `url` with the sandbox mounted and
    `creds` (its DATA_DIR's sandbox credentials) open it.

    Returns the server's clock (its `Date` header), which decides quiet hours.
    """
    try:
        health = httpx.get(f"{url}/healthz", timeout=5)
    except httpx.TransportError as exc:
        raise DemoError(
            f"no gateway answers at {url} ({type(exc).__name__}); start one with `gateway run`"
        ) from None
    if health.status_code != 200:
        raise DemoError(f"the gateway at {url} is not healthy: /healthz answered {health.text}")
    try:
        clock = httpx.get(f"{url}{CONTROL}/clock", auth=_auth(creds), timeout=5)
    except httpx.TransportError as exc:
        raise DemoError(f"the gateway at {url} stopped answering ({type(exc).__name__})") from None
    if clock.status_code == 404:
        raise DemoError(
            f"the gateway at {url} is not in sandbox mode (it has Twilio credentials); "
            "the demo only runs against the built-in sandbox"
        )
    if clock.status_code == 401:
        raise DemoError(
            f"the sandbox at {url}{SANDBOX_PATH} refused this DATA_DIR's credentials: run the "
            "demo with the gateway's DATA_DIR"
        )
    if clock.status_code != 200:
        raise DemoError(f"the sandbox at {url}{SANDBOX_PATH} refused: {_error_text(clock)}")
    date = health.headers.get("date")
    return parsedate_to_datetime(date).astimezone(UTC) if date else datetime.now(UTC)


class Api:
    """The gateway's API with the demo account's key; any unexpected answer is a DemoError."""

    def __init__(self, url: str, key: str, creds: SandboxCredentials) -> None:
        self.client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=15
        )
        self.control = httpx.Client(base_url=url, auth=_auth(creds), timeout=15)
        self.calls_path = f"{SANDBOX_PATH}/2010-04-01/Accounts/{creds.account_sid}/Calls"

    def call(
        self, method: str, path: str, *, expect: tuple[int, ...] = (200, 201), **kw: Any
    ) -> Any:
        try:
            response = self.client.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise DemoError(f"{method} {path} failed: {type(exc).__name__}") from None
        if response.status_code not in expect:
            raise DemoError(
                f"{method} {path} answered {response.status_code}: {_error_text(response)}"
            )
        return response.json() if response.content else None

    def sandbox(self, method: str, path: str, **kw: Any) -> Any:
        """The sandbox's control routes and Twilio REST API (its own Basic auth)."""
        try:
            response = self.control.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise DemoError(f"{method} {path} failed: {type(exc).__name__}") from None
        if response.status_code >= 300:
            raise DemoError(f"sandbox {method} {path}: {_error_text(response)}")
        return response.json()


def _lead_script(answers: LeadAnswers) -> dict[str, Any]:
    # No key at the greeting's "press 9"; `_follow` scripts the "1" for a callback when the
    # fallback comes (a fixed list would depend on whether the greeting ended first).
    base: dict[str, Any] = {"answer_after": 3.0}
    match answers:
        case "machine":
            return {**base, "voicemail": True}
        case "no-answer":
            return {**base, "answer": False}
        case "busy":
            return {**base, "busy": True}
    return base


def _rep_script(index: int, scenario: Scenario) -> tuple[dict[str, Any], str]:
    """The rep's phone script and how the demo tells it."""
    if index > 0 or scenario.first_rep == "answers":
        return {"answer_after": 3.0, "digits": ["1"]}, "answers, hears the whisper, presses 1"
    match scenario.first_rep:
        case "no-answer":
            return {"answer": False}, "doesn't answer"
        case "busy":
            return {"busy": True}, "is busy"
    return {"answer_after": 3.0, "digits": [""]}, "answers, hears the whisper, presses nothing"


class Teller:
    """Prints what changed on the party line and its play since the last look."""

    def __init__(self, out: TextIO, rep_names: dict[str, str], seen_activities: set[str]) -> None:
        self.out, self.rep_names, self.seen = out, rep_names, seen_activities
        self.start = time.monotonic()
        self.legs: dict[str, tuple[Any, ...]] = {}
        self.messages: set[str] = set()
        self.phase = ""

    def say(self, text: str) -> None:
        print(f"  +{time.monotonic() - self.start:5.1f}s  {text}", file=self.out, flush=True)

    def look(self, line: dict[str, Any], play: dict[str, Any]) -> None:
        if line["state"] != self.phase:
            self.phase = line["state"]
            self.say(f"phase     {self.phase}")
        for leg in line["legs"]:
            self._leg(leg)
        for activity in play.get("activities") or []:
            if activity["id"] not in self.seen:
                self.seen.add(activity["id"])
                note = f"  ({activity['note']})" if activity.get("note") else ""
                self.say(f"{activity['type']:<9} {activity['label']}{note}")
        for message in play.get("messages") or []:
            if message["id"] not in self.messages:
                self.messages.add(message["id"])
                self.say(f"text      to the lead ({message['status']}): {message['body']}")

    def _leg(self, leg: dict[str, Any]) -> None:
        key = (leg["status"], leg["answered_by"], leg["accepted_at"], leg["result"])
        before = self.legs.get(leg["leg"])
        if before == key:
            return
        self.legs[leg["leg"]] = key
        who = "the lead" if leg["role"] == "lead" else self.rep_names.get(leg["rep_id"], "a rep")
        changes: list[str] = []
        if before is None:
            changes.append(f"calling {who} at {leg['number']}")
        old = before or (None, None, None, None)
        if leg["status"] and leg["status"] != old[0]:
            changes.append(f"call {leg['status']}")
        if leg["answered_by"] and leg["answered_by"] != old[1]:
            changes.append(f"answered by {leg['answered_by']}")
        if leg["accepted_at"] and not old[2]:
            changes.append("pressed 1")
        if leg["result"] and leg["result"] != old[3]:
            changes.append(f"result {leg['result']}")
        if leg["duration"] is not None and leg["status"] == "completed":
            changes.append(f"{leg['duration']} s")
        self.say(f"leg {leg['leg']:<6} {', '.join(changes)}")


def _register_number(api: Api) -> str:
    """The account's number: its first, or a free one of OUR_NUMBERS (numbers are global)."""
    existing = api.call("GET", "/v1/numbers")["data"]
    if existing:
        return str(existing[0]["number"])
    for number in OUR_NUMBERS:
        created = api.call("POST", "/v1/numbers", json={"number": number}, expect=(201, 409))
        if created.get("number") == number:
            return number
    raise DemoError("every demo number is taken by another account")


def party_line(
    url: str,
    key: str,
    scenario: Scenario,
    *,
    creds: SandboxCredentials,
    server_now: datetime,
    out: TextIO,
) -> int:
    """Set up the scenario, start the party line and tell it until it ends; the exit code."""
    api = Api(url, key, creds)
    account = api.call("GET", "/v1/account", expect=(200, 401))
    if "error" in account:
        raise DemoError(
            f"{url} refuses the demo's API key: run the demo with the gateway's DATA_DIR / "
            "DATABASE_URL, or pass --key"
        )
    lead = choose_lead(server_now)
    local = server_now.astimezone(ZoneInfo(lead.zone))
    until = lead.open_until.astimezone(ZoneInfo(lead.zone))
    number = _register_number(api)
    api.sandbox("PUT", f"{CONTROL}/phones/{lead.phone}", json=_lead_script(scenario.lead_answers))

    def show(label: str, text: str) -> None:
        print(f"{label:<11} {text}", file=out, flush=True)

    show("account", f"{account['id']} {account['name']!r}")
    show("number", f"{number} (the calls come from it)")
    show(
        "lead",
        f"Kai Demo {lead.phone} in {lead.place}: {local:%a %H:%M} there ({lead.zone}), inside "
        f"calling hours until {until:%H:%M}, so the gate lets the call go; answers as: "
        f"{scenario.lead_answers}",
    )
    rep_names: dict[str, str] = {}
    rep_ids: list[str] = []
    for index in range(scenario.reps):
        phone, name = REP_PHONES[index], f"{REP_NAMES[index]} (rep {index + 1})"
        rep = api.call("POST", "/v1/reps", json={"name": name, "phone": phone})
        script, told = _rep_script(index, scenario)
        api.sandbox("PUT", f"{CONTROL}/phones/{phone}", json=script)
        rep_names[rep["id"]], rep_ids = name, [*rep_ids, rep["id"]]
        show(f"rep {index + 1}", f"{name} {phone}: {told}")
    others = [
        r for r in api.call("GET", "/v1/reps?available=true")["data"] if r["id"] not in rep_names
    ]
    if others:
        show("note", f"the account has {len(others)} other available reps; they may be called")
    policy = {
        "rep_answer_timeout": scenario.rep_timeout,
        "lead_answer_timeout": 15,
        "max_rep_attempts": scenario.reps,
        "lead_retries": 0,  # a retry waits 10 minutes of real time: the demo would sit idle
    }
    show("policy", ", ".join(f"{k} {v}" for k, v in policy.items()))
    show("time", "the sandbox follows the wall clock; no clock advancing needed")
    api.call(
        "PUT",
        f"/v1/playbooks/{PLAYBOOK_ID}",
        content=PLAYBOOK,
        headers={"Content-Type": "application/yaml"},
    )
    play = api.call(
        "POST",
        "/v1/plays",
        json={
            "playbook_id": PLAYBOOK_ID,
            "lead": {
                "phone": lead.phone,
                "first_name": "Kai",
                "last_name": "Demo",
                "originators": [{"origin": "Demo", "key": f"demo-{int(time.time())}"}],
            },
        },
    )
    show("play", f"{play['id']} on playbook {PLAYBOOK_ID} (a one-day wait: it stays running)")
    seen = {a["id"] for a in api.call("GET", f"/v1/plays/{play['id']}")["activities"] or []}
    line = api.call("POST", f"/v1/plays/{play['id']}/party-line", json={"policy": policy})
    show("party line", f"{line['id']} started by POST /v1/plays/{play['id']}/party-line")
    teller = Teller(out, rep_names, set(seen))
    try:
        ended = _follow(api, teller, line["id"], play["id"], lead=lead.phone, scenario=scenario)
    finally:
        _clean_up(api, play["id"], rep_ids)
    if ended is None:
        print(
            f"error: party line {line['id']} still {teller.phase} after {scenario.timeout:g} s",
            file=out,
            flush=True,
        )
        return 1
    line, play = ended
    outcomes = [
        a["label"]
        for a in play["activities"] or []
        if a["type"] == "outcome" and a["id"] not in seen
    ]
    connected = line["connected_rep_id"]
    rep = f"{rep_names.get(connected, connected)}" if connected else "none"
    seconds = (
        datetime.fromisoformat(line["ended_at"]) - datetime.fromisoformat(line["created_at"])
    ).total_seconds()
    print(
        f"party line {line['id']} ended ({line['end_reason']}): "
        f"outcome {outcomes[-1] if outcomes else 'none'}, rep connected {rep}, {seconds:.1f} s",
        file=out,
        flush=True,
    )
    print(
        f"see it: curl -s -H 'Authorization: Bearer {key}' {url}/v1/party-lines/{line['id']}",
        file=out,
        flush=True,
    )
    return 0


def _follow(
    api: Api,
    teller: Teller,
    line_id: str,
    play_id: str,
    *,
    lead: str,
    scenario: Scenario,
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Poll until the party line ends (its last state and play) or the time is up (None)."""
    deadline = time.monotonic() + scenario.timeout
    connected_at: float | None = None
    hung_up = pressed = False
    while time.monotonic() < deadline:
        line = api.call("GET", f"/v1/party-lines/{line_id}")
        play = api.call("GET", f"/v1/plays/{play_id}")
        teller.look(line, play)
        if line["state"] == "ended":
            return line, play
        if line["state"] == "rep_unsuccessful" and not pressed:
            teller.say("demo      the lead will press 1 for a callback (sandbox phone script)")
            api.sandbox("PUT", f"{CONTROL}/phones/{lead}", json={"digits": ["1"]})
            pressed = True
        if line["state"] == "connected" and connected_at is None:
            connected_at = time.monotonic()
        if (
            connected_at is not None
            and not hung_up
            and time.monotonic() - connected_at >= scenario.talk
        ):
            hung_up = _rep_hangs_up(api, teller, line)
        time.sleep(POLL_SECONDS)
    return None


def _rep_hangs_up(api: Api, teller: Teller, line: dict[str, Any]) -> bool:
    """End the connected rep's call as the rep hanging up would (the conference ends with it)."""
    rep_id = line["connected_rep_id"]
    leg = next(
        (g for g in line["legs"] if g["rep_id"] == rep_id and g["result"] == "connected"), None
    )
    if leg is None or not leg["call_sid"]:
        return False
    teller.say(f"demo      {teller.rep_names.get(rep_id, 'the rep')} hangs up (sandbox Calls API)")
    api.sandbox("POST", f"{api.calls_path}/{leg['call_sid']}.json", data={"Status": "completed"})
    return True


def _clean_up(api: Api, play_id: str, rep_ids: list[str]) -> None:
    """Stop the waiting play and retire the demo's reps, so a later run starts clean."""
    try:
        api.call("POST", f"/v1/plays/{play_id}/stop", expect=(200, 409))
        for rep_id in rep_ids:
            api.call("PATCH", f"/v1/reps/{rep_id}", json={"available": False})
    except DemoError:
        pass  # the story is told; a leftover play or rep is harmless
