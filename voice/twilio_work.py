"""Twilio REST work of a party line: stored as JSON items, carried out by the job.

Items are decided under the party line's row lock (in a route or a job) and carried out after
the commit, one at a time, by `party_lines.run`: never while holding the lock, so Twilio's
callbacks about a call we just placed are never stuck behind our own request.

* `call`: `calls.create` (lead: the answer Url and async AMD; rep: the whisper Url);
  feeds back CallPlaced or CallNotPlaced.
* `cancel`: `calls(sid).update(status="completed")`; "already over" is fine.
* `twiml`: `calls(sid).update(twiml=...)`; 21220 "not in progress" is fine.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from voice.actions import CallLead, CallRep
from voice.events import CallNotPlaced, CallPlaced, Event
from voice.links import Links

log = logging.getLogger(__name__)

CALL_EVENTS = ["initiated", "ringing", "answered", "completed"]
AMD_MODE = "DetectMessageEnd"  # a machine is reported after its beep: the moment to speak


class OutcomeUnknown(Exception):
    """The request may or may not have reached Twilio (timeout, connection reset)."""


def call_item(action: CallLead | CallRep) -> dict[str, Any]:
    """A `calls.create` for a lead or rep leg."""
    return {
        "kind": "call",
        "leg": action.leg,
        "role": "lead" if isinstance(action, CallLead) else "rep",
        "to": action.number,
        "timeout": action.timeout,
        "amd": action.amd,
    }


def cancel_item(call_sid: str, reason: str) -> dict[str, Any]:
    """End a ringing or answered call."""
    return {"kind": "cancel", "call_sid": call_sid, "reason": reason}


def twiml_item(call_sid: str, document: str) -> dict[str, Any]:
    """Redirect a live call to new TwiML."""
    return {"kind": "twiml", "call_sid": call_sid, "twiml": document}


def repeatable(item: dict[str, Any]) -> bool:
    """Doing it twice is harmless: ending or redirecting a call again changes nothing.

    A `call` is not: an unknown outcome there is left to the callbacks (they carry the leg,
    so a call that was placed still finds its leg) and to the watchdog.
    """
    return item.get("kind") in ("cancel", "twiml")


async def carry_out(
    client: Client, item: dict[str, Any], *, links: Links, from_number: str
) -> Event | None:
    """One REST request for `item`; the event to feed back, if any. OutcomeUnknown on timeouts."""
    kind = item.get("kind")
    try:
        if kind == "call":
            return await _create(client, item, links=links, from_number=from_number)
        sid = str(item["call_sid"])
        if kind == "cancel":
            await client.calls(sid).update_async(status="completed")
        elif kind == "twiml":
            await client.calls(sid).update_async(twiml=str(item["twiml"]))
        else:
            log.error("unknown party-line outbox item %r", kind)
    except TwilioRestException as exc:
        if kind == "call":
            return CallNotPlaced(str(item["leg"]), exc.code, str(exc.msg)[:200])
        # The call ended before our request: the callbacks tell the party line.
        log.info("party line %s: %s %s refused: %s", links.party_line_id, kind, exc.code, exc.msg)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise OutcomeUnknown(str(exc)) from exc
    return None


async def _create(
    client: Client, item: dict[str, Any], *, links: Links, from_number: str
) -> CallPlaced:
    leg = str(item["leg"])
    options: dict[str, Any] = {
        "status_callback": links.status(leg),
        "status_callback_event": CALL_EVENTS,
        "status_callback_method": "POST",
        "timeout": int(item["timeout"]),
        "method": "POST",
    }
    if item.get("role") == "lead":
        options["url"] = links.answer(leg)
    else:
        options["url"] = links.whisper(leg)
    if item.get("amd"):
        options.update(
            machine_detection=AMD_MODE,
            async_amd="true",
            async_amd_status_callback=links.amd(leg),
            async_amd_status_callback_method="POST",
        )
    call = await client.calls.create_async(to=str(item["to"]), from_=from_number, **options)
    return CallPlaced(leg, str(call.sid))
