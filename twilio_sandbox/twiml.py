"""TwiML execution for calls: Say, Play, Pause, Gather, Dial (Number, Conference),
Redirect, Hangup, Reject.

Verbs take virtual time (speech length, pauses, ringing) so a test sees the
same order of events as a real call. Audio itself is not simulated: the
scripted phone "hears" nothing and answers Gathers from its `digits` list.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from twilio_sandbox.conferences import JoinOptions, event_words
from twilio_sandbox.wire import parse_bool

if TYPE_CHECKING:
    from twilio_sandbox.calls import Call
    from twilio_sandbox.sandbox import Sandbox

SECONDS_PER_WORD = 0.4
PLAY_SECONDS = 5.0
SECONDS_PER_DIGIT = 0.3


@dataclass
class _Goto:
    """Continue with the TwiML that `url` answers (Redirect, Gather/Dial action)."""

    kind: str
    url: str
    method: str
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class _Stop:
    outcome: str  # "hangup", "busy", "no-answer"


class Twiml:
    """Runs TwiML documents on calls."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sb = sandbox

    async def run(self, call: Call, url: str | None, method: str, twiml: str | None) -> str:
        """Run a call's TwiML until it ends: 'completed' (document ran out), 'hangup',
        or a Reject outcome ('busy', 'no-answer')."""
        doc_url = url
        text = twiml if twiml is not None else await self._fetch(call, "call.twiml", url, method)
        while text is not None:
            try:
                root = ET.fromstring(text)
            except ET.ParseError:
                return "hangup"  # Twilio plays "an application error has occurred"
            step: _Goto | _Stop | None = None
            for verb in root:
                step = await self._verb(call, verb, doc_url)
                if step is not None:
                    break
            if isinstance(step, _Stop):
                return step.outcome
            if step is None:
                return "completed"
            doc_url = step.url
            text = await self._fetch(call, step.kind, step.url, step.method, step.params)
        return "hangup"

    async def _fetch(
        self,
        call: Call,
        kind: str,
        url: str | None,
        method: str,
        extra: dict[str, str] | None = None,
    ) -> str | None:
        if not url:
            return None
        params = {**call.params(), **(extra or {})}
        entry = await self._sb.webhooks.fetch(kind, url, params, method)
        if self._sb.faults.take_fetch(kind, params) is not None:
            # Twilio asks again when an answer is lost; the call follows the second answer.
            entry = await self._sb.webhooks.fetch(kind, url, params, method, fault="duplicate")
        if entry.status is None or not 200 <= entry.status < 300:
            return None
        return entry.body

    async def _verb(
        self, call: Call, verb: ET.Element, doc_url: str | None
    ) -> _Goto | _Stop | None:
        sleep = self._sb.scheduler.sleep
        tag = verb.tag
        if tag == "Say":
            words = len((verb.text or "").split())
            await sleep(max(1.0, words * SECONDS_PER_WORD) * _loop(verb))
        elif tag == "Play":
            await sleep((1.0 if verb.get("digits") else PLAY_SECONDS) * _loop(verb))
        elif tag == "Pause":
            await sleep(float(verb.get("length") or 1))
        elif tag == "Gather":
            return await self._gather(call, verb, doc_url)
        elif tag == "Dial":
            return await self._dial(call, verb, doc_url)
        elif tag == "Redirect":
            target = _resolve(doc_url, (verb.text or "").strip())
            return _Goto("call.twiml", target, verb.get("method") or "POST")
        elif tag == "Hangup":
            return _Stop("hangup")
        elif tag == "Reject":
            if call.status == "in-progress":
                return _Stop("hangup")
            return _Stop("busy" if verb.get("reason") == "busy" else "no-answer")
        return None

    async def _gather(self, call: Call, verb: ET.Element, doc_url: str | None) -> _Goto | None:
        for child in verb:
            await self._verb(call, child, doc_url)
        phone = self._sb.phones.get(call.from_ if call.direction == "inbound" else call.to)
        digits = phone.next_digits()
        timeout = float(verb.get("timeout") or 5)
        waited = False
        if digits is None and phone.script.by_hand:
            # A person listens and may press keys (Calls.press): as long as the Gather waits,
            # and no longer (the wait is the timeout, not spent twice).
            waited = True
            call.hand_wake = self._sb.scheduler.new_wake()
            try:
                if await self._sb.scheduler.park_until(call.hand_wake, timeout):
                    digits = phone.next_digits()
            finally:
                call.hand_wake = None
        action = (
            _resolve(doc_url, verb.get("action") or "") if (verb.get("action") or doc_url) else ""
        )
        method = verb.get("method") or "POST"
        if digits:
            finish = verb.get("finishOnKey", "#")
            if finish and finish in digits:
                digits = digits[: digits.index(finish)]
            if verb.get("numDigits"):
                digits = digits[: int(verb.get("numDigits") or len(digits))]
            await self._sb.scheduler.sleep(0.5 + SECONDS_PER_DIGIT * len(digits))
            if action:
                return _Goto("gather.action", action, method, {"Digits": digits})
            return None
        if not waited:
            await self._sb.scheduler.sleep(timeout)
        if action and parse_bool(verb.get("actionOnEmptyResult")):
            return _Goto("gather.action", action, method, {"Digits": ""})
        return None

    async def _dial(self, call: Call, verb: ET.Element, doc_url: str | None) -> _Goto | None:
        action = verb.get("action")
        method = verb.get("method") or "POST"
        conference = verb.find("Conference")
        if conference is not None:
            await self._sb.conferences.sit(call, _join_options(conference, doc_url))
            result = {"DialCallStatus": "answered"}
        else:
            number = verb.find("Number")
            to = ((number.text if number is not None else verb.text) or "").strip()
            target = _resolve(doc_url, action) if action else None
            result = await self._dial_number(call, to, verb, number, doc_url=doc_url, action=target)
        if action:
            return _Goto("dial.action", _resolve(doc_url, action), method, result)
        return None

    async def _dial_number(
        self,
        call: Call,
        to: str,
        verb: ET.Element,
        number: ET.Element | None,
        *,
        doc_url: str | None,
        action: str | None,
    ) -> dict[str, str]:
        sb = self._sb
        attrs = number.attrib if number is not None else {}
        child = sb.calls.new(to, verb.get("callerId") or call.from_, "outbound-dial")
        child.parent_call_sid = call.sid
        child.status_callback = attrs.get("statusCallback")
        child.status_callback_method = attrs.get("statusCallbackMethod", "POST")
        child.events = event_words([attrs.get("statusCallbackEvent", "")]) or {"completed"}
        child.timeout = float(verb.get("timeout") or 30)
        whisper = _resolve(doc_url, attrs["url"]) if attrs.get("url") else None
        wake = sb.scheduler.new_wake()
        child.dial_waiter = wake
        call.child = child
        child.task = sb.scheduler.start_now(
            self._dial_leg(child, whisper, attrs.get("method", "POST"))
        )
        try:
            await sb.scheduler.park(wake)
        except asyncio.CancelledError:
            # The caller hung up: Twilio still requests the action (its TwiML is ignored).
            if action:
                params = {**call.params(), **_dial_result(child)}
                sb.webhooks.post(
                    call.sid, "dial.action", action, params, method=verb.get("method") or "POST"
                )
            raise
        call.child = None
        return _dial_result(child)

    async def _dial_leg(self, child: Call, whisper_url: str | None, method: str) -> None:
        sb = self._sb
        if not await sb.calls.ring(child, child.timeout):
            return
        if whisper_url:
            # The whisper runs on the called party only; hanging up there declines the call.
            outcome = await self.run(child, whisper_url, method, None)
            if outcome != "completed":
                sb.calls.end(child, "completed")
                return
        child.bridged_at = sb.clock.now()
        await sb.scheduler.park(sb.scheduler.new_wake())  # until either side hangs up


def _dial_result(child: Call) -> dict[str, str]:
    if child.bridged_at is not None and child.end_time is not None:
        seconds = int((child.end_time - child.bridged_at).total_seconds())
        status = "completed"
    else:
        seconds = 0
        status = child.status if child.status in ("busy", "failed", "canceled") else "no-answer"
    return {"DialCallStatus": status, "DialCallSid": child.sid, "DialCallDuration": str(seconds)}


def _loop(verb: ET.Element) -> int:
    count = int(verb.get("loop") or 1)
    return count if count > 0 else 10  # loop="0" means forever; ten rounds stand in


def _resolve(base: str | None, url: str) -> str:
    return urljoin(base or "", url)


def _join_options(node: ET.Element, doc_url: str | None) -> JoinOptions:
    callback = node.get("statusCallback")
    return JoinOptions(
        name=(node.text or "").strip(),
        start_on_enter=parse_bool(node.get("startConferenceOnEnter"), True),
        end_on_exit=parse_bool(node.get("endConferenceOnExit")),
        muted=parse_bool(node.get("muted")),
        beep=node.get("beep") or "true",
        wait_url=node.get("waitUrl"),
        label=node.get("participantLabel"),
        coaching=parse_bool(node.get("coach")),
        status_callback=_resolve(doc_url, callback) if callback else None,
        status_callback_method=node.get("statusCallbackMethod") or "POST",
        events=event_words([node.get("statusCallbackEvent") or ""]),
    )
