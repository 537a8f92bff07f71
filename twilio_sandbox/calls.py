"""Calls: create, ring scripted phones, machine detection, status callbacks, hangups.

Each call is one simulated process (`Call.task`). Hanging up or redirecting a
call from outside (REST update, the other leg, the phone's script) cancels
that process and settles the call's state synchronously, so the REST answer
already shows the new status; callbacks follow when time runs.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from twilio_sandbox.phones import AnsweredBy
from twilio_sandbox.scheduler import Timer, Wake
from twilio_sandbox.wire import API_VERSION, Form, TwilioError, is_e164, new_sid, rfc2822

if TYPE_CHECKING:
    from twilio_sandbox.conferences import JoinOptions
    from twilio_sandbox.sandbox import Sandbox

TERMINAL = {"completed", "busy", "no-answer", "failed", "canceled"}
EVENT_OF = {"initiated": "initiated", "ringing": "ringing", "in-progress": "answered"}


@dataclass
class Call:
    sid: str
    account_sid: str
    to: str
    from_: str
    direction: str  # outbound-api | outbound-dial | inbound
    status: str
    date_created: datetime
    date_updated: datetime
    parent_call_sid: str | None = None
    url: str | None = None
    method: str = "POST"
    twiml: str | None = None
    status_callback: str | None = None
    status_callback_method: str = "POST"
    events: set[str] = field(default_factory=lambda: {"completed"})
    machine_detection: str | None = None
    machine_detection_timeout: float = 30.0
    async_amd: bool = False
    amd_callback: str | None = None
    amd_callback_method: str = "POST"
    timeout: float = 60.0
    start_time: datetime | None = None
    end_time: datetime | None = None
    answered_by: str | None = None
    sequence: int = 0
    join: JoinOptions | None = None  # Participants API: join this conference on answer
    # runtime links
    task: asyncio.Task[None] | None = None
    ended: bool = False
    hangup_timer: Timer | None = None
    child: Call | None = None  # leg being dialled by <Dial><Number>
    dial_waiter: Wake | None = None  # set on a child: wakes the parent's <Dial>
    bridged_at: datetime | None = None
    conference_sid: str | None = None
    hand_wake: Wake | None = None  # a by-hand phone ringing, or in a Gather, waits on this
    hand_answer: AnsweredBy | None = None  # what a person answered it as

    @property
    def duration(self) -> int:
        if self.start_time is None or self.end_time is None:
            return 0
        return math.ceil((self.end_time - self.start_time).total_seconds())

    def to_json(self) -> dict[str, Any]:
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{self.sid}"
        subs = ("notifications", "recordings", "payments", "events", "siprec", "streams")
        return {
            "account_sid": self.account_sid,
            "answered_by": self.answered_by,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": rfc2822(self.date_created),
            "date_updated": rfc2822(self.date_updated),
            "direction": self.direction,
            "duration": str(self.duration) if self.end_time else None,
            "end_time": rfc2822(self.end_time),
            "forwarded_from": None,
            "from": self.from_,
            "from_formatted": self.from_,
            "group_sid": None,
            "parent_call_sid": self.parent_call_sid,
            "phone_number_sid": None,
            "price": None,
            "price_unit": "USD",
            "queue_time": "0",
            "sid": self.sid,
            "start_time": rfc2822(self.start_time),
            "status": self.status,
            "subresource_uris": {name: f"{base}/{name.capitalize()}.json" for name in subs},
            "to": self.to,
            "to_formatted": self.to,
            "trunk_sid": None,
            "uri": f"{base}.json",
        }

    def params(self) -> dict[str, str]:
        """The parameters Twilio sends with every request about this call."""
        out = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": self.sid,
            "CallStatus": self.status,
            "Called": self.to,
            "Caller": self.from_,
            "Direction": self.direction,
            "From": self.from_,
            "To": self.to,
        }
        if self.parent_call_sid:
            out["ParentCallSid"] = self.parent_call_sid
        if self.answered_by:
            out["AnsweredBy"] = self.answered_by
        return out


class Calls:
    """Every call leg the sandbox knows."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sb = sandbox
        self.calls: dict[str, Call] = {}

    def new(self, to: str, from_: str, direction: str, form: Form | None = None) -> Call:
        now = self._sb.clock.now()
        call = Call(new_sid("CA"), self._sb.account_sid, to, from_, direction, "queued", now, now)
        if form is not None:
            call.status_callback = form.get("StatusCallback") or None
            call.status_callback_method = form.get("StatusCallbackMethod") or "POST"
            events = {
                e.strip().lower() for v in form.getall("StatusCallbackEvent") for e in v.split()
            }
            call.events = events or {"completed"}
            call.machine_detection = form.get("MachineDetection") or None
            call.machine_detection_timeout = float(form.get("MachineDetectionTimeout") or 30)
            call.async_amd = form.get("AsyncAmd").lower() == "true"
            call.amd_callback = (
                form.get("AsyncAmdStatusCallback") or form.get("AmdStatusCallback") or None
            )
            call.amd_callback_method = (
                form.get("AsyncAmdStatusCallbackMethod")
                or form.get("AmdStatusCallbackMethod")
                or "POST"
            )
            call.timeout = float(form.get("Timeout") or 60)
        self.calls[call.sid] = call
        return call

    def check_numbers(self, to: str, from_: str) -> None:
        if not to:
            raise TwilioError(21201)
        if not is_e164(to):
            raise TwilioError(21211, value=to)
        if from_ not in self._sb.numbers:
            raise TwilioError(21210, value=from_)

    # -- REST ---------------------------------------------------------------

    def create(self, form: Form) -> Call:
        """Calls.create: validate, queue, and start dialling when time next runs."""
        to, from_ = form.get("To"), form.get("From")
        self.check_numbers(to, from_)
        url, twiml = form.get("Url") or None, form.get("Twiml") or None
        if url is None and twiml is None:
            raise TwilioError(21205, value="")
        if url is not None and not url.startswith(("http://", "https://")):
            raise TwilioError(21205, value=url)
        call = self.new(to, from_, "outbound-api", form)
        call.url, call.twiml, call.method = url, twiml, form.get("Method") or "POST"
        self.start(call)
        return call

    def start(self, call: Call) -> None:
        def begin() -> None:
            if not call.ended:
                call.task = self._sb.scheduler.start_now(self._outbound(call))

        self._sb.scheduler.call_later(0, begin)

    def get(self, sid: str) -> Call:
        if sid not in self.calls:
            raise TwilioError(20404, status=404, path=f"/Calls/{sid}.json")
        return self.calls[sid]

    def update(self, sid: str, form: Form) -> Call:
        """Calls(sid).update: Status=completed/canceled, or new Url/Twiml (redirect)."""
        call = self.get(sid)
        status = form.get("Status")
        if status in ("completed", "canceled"):
            if call.status in ("queued", "initiated", "ringing"):
                self.hangup(call, "canceled")
            elif call.status == "in-progress" and status == "completed":
                self.hangup(call, "completed")
            return call
        url, twiml = form.get("Url") or None, form.get("Twiml") or None
        if url or twiml:
            if call.status != "in-progress":
                raise TwilioError(21220)
            self._interrupt(call)
            call.url, call.twiml = url, twiml
            call.method = form.get("Method") or "POST"
            call.task = self._sb.scheduler.start_now(self._run_twiml(call))
        if form.get("StatusCallback"):
            call.status_callback = form.get("StatusCallback")
        return call

    # -- a person's hand (the dev phone) --------------------------------------

    def answer_by_hand(self, sid: str, *, machine: bool = False) -> Call:
        """Pick up a by-hand phone's ringing call, as a person or as its voicemail."""
        call = self.get(sid)
        if call.hand_wake is None or call.status != "ringing":
            raise TwilioError(21220)  # not a call that is ringing and waiting for a hand
        call.hand_answer = "machine_end_beep" if machine else "human"
        self._sb.scheduler.wake(call.hand_wake)
        return call

    def press(self, sid: str, digits: str) -> Call:
        """Keys pressed on a call: to the Gather waiting for them, else to the next one."""
        call = self.get(sid)
        if call.ended or not digits or not all(d in "0123456789*#" for d in digits):
            raise TwilioError(21220)
        phone = call.from_ if call.direction == "inbound" else call.to
        self._sb.phones.get(phone).queue_digits(digits)
        if call.hand_wake is not None and call.status == "in-progress":
            self._sb.scheduler.wake(call.hand_wake)
        return call

    # -- lifecycle ----------------------------------------------------------

    async def _outbound(self, call: Call) -> None:
        if not await self.ring(call, call.timeout):
            return
        await self._detect_machine(call)
        if call.join is not None:
            await self._sb.conferences.sit(call, call.join)
            self.end(call, "completed")
            return
        await self._run_twiml(call)

    async def _run_twiml(self, call: Call) -> None:
        outcome = await self._sb.twiml.run(call, call.url, call.method, call.twiml)
        self.end(call, "completed" if outcome == "hangup" else outcome)

    async def ring(self, call: Call, ring_for: float) -> bool:
        """Dial the phone as its script says; True once it is answered."""
        sched, script = self._sb.scheduler, self._sb.phones.get(call.to).script
        self.progress(call, "initiated")
        await sched.sleep(1.0)
        if script.unreachable:
            self.end(call, "failed")
            return False
        self.progress(call, "ringing")
        if script.busy:
            await sched.sleep(1.0)
            self.end(call, "busy")
            return False
        if script.by_hand:
            call.hand_wake = sched.new_wake()
            answered = await sched.park_until(call.hand_wake, ring_for)
            call.hand_wake = None
            if not answered:
                self.end(call, "no-answer")
                return False
        elif not script.answer or script.answer_after >= ring_for:
            await sched.sleep(ring_for)
            self.end(call, "no-answer")
            return False
        else:
            await sched.sleep(script.answer_after)
        call.start_time = self._sb.clock.now()
        self.progress(call, "in-progress")
        if script.hangup_after is not None:
            call.hangup_timer = sched.call_later(script.hangup_after, lambda: self.hangup(call))
        return True

    async def _detect_machine(self, call: Call) -> None:
        if not call.machine_detection:
            return
        phone = self._sb.phones.get(call.to)
        result, seconds = phone.amd_result(call.machine_detection)
        if call.hand_answer is not None:
            result, seconds = call.hand_answer, 2.5 if call.hand_answer == "human" else 4.0
        if seconds > call.machine_detection_timeout:
            result, seconds = "unknown", call.machine_detection_timeout
        if not call.async_amd:
            # Synchronous AMD holds the Url request until detection ends.
            await self._sb.scheduler.sleep(seconds)
            call.answered_by = result
            return

        def report() -> None:
            if call.ended:
                return
            call.answered_by = result
            params = {
                "AccountSid": call.account_sid,
                "AnsweredBy": result,
                "CallSid": call.sid,
                "MachineDetectionDuration": str(int(seconds * 1000)),
            }
            self._sb.webhooks.post(
                call.sid, "call.amd", call.amd_callback, params, method=call.amd_callback_method
            )

        self._sb.scheduler.call_later(seconds, report)

    def progress(self, call: Call, status: str) -> None:
        """Move a call to `status` and send the status callback if it was asked for."""
        call.status = status
        call.date_updated = self._sb.clock.now()
        event = EVENT_OF.get(status, "completed")
        if not call.status_callback or event not in call.events:
            return
        params = call.params()
        params.update(
            CallbackSource="call-progress-events",
            SequenceNumber=str(call.sequence),
            Timestamp=str(rfc2822(call.date_updated)),
        )
        if status in TERMINAL:
            params.update(CallDuration=str(call.duration), Duration=str(-(-call.duration // 60)))
        call.sequence += 1
        self._sb.webhooks.post(
            call.sid,
            "call.status",
            call.status_callback,
            params,
            method=call.status_callback_method,
        )

    # -- ending -------------------------------------------------------------

    def end(self, call: Call, status: str) -> None:
        """Finish a call (idempotent): detach it from bridges and conferences, report it."""
        if call.ended:
            return
        call.ended = True
        call.end_time = self._sb.clock.now()
        if call.hangup_timer is not None:
            call.hangup_timer.cancel()
        self._detach(call)
        if call.join is not None:
            self._sb.conferences.dropped(call)
        if call.dial_waiter is not None:
            self._sb.scheduler.wake(call.dial_waiter)
        self.progress(call, status)

    def hangup(self, call: Call, status: str = "completed") -> None:
        """End a call from outside its own process (phone, REST, other leg)."""
        if call.ended:
            return
        if status == "completed" and call.status != "in-progress":
            status = "canceled"
        self.end(call, status)
        self._cancel_task(call)

    def _interrupt(self, call: Call) -> None:
        """Stop what the call is doing (TwiML, bridge, conference) without ending it."""
        self._cancel_task(call)
        self._detach(call)

    def _cancel_task(self, call: Call) -> None:
        task = call.task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()

    def _detach(self, call: Call) -> None:
        if call.conference_sid is not None:
            self._sb.conferences.leave(call, kicked=False)
        if call.child is not None and not call.child.ended:
            child, call.child = call.child, None
            child.dial_waiter = None
            self.hangup(child)

    # -- inbound --------------------------------------------------------------

    def receive(self, from_: str, to: str) -> Call:
        """A phone calls one of our numbers: ring briefly, then run the number's voice URL."""
        owned = self._sb.numbers.get(to)
        if owned is None or not owned.voice_url:
            raise TwilioError(21210, value=to)
        call = self.new(to, from_, "inbound")
        call.url, call.method = owned.voice_url, owned.voice_method
        call.status_callback = owned.voice_status_callback
        call.events = {"initiated", "ringing", "answered", "completed"}

        async def answer() -> None:
            self.progress(call, "ringing")
            await self._sb.scheduler.sleep(1.0)
            call.start_time = self._sb.clock.now()
            self.progress(call, "in-progress")
            hangup_after = self._sb.phones.get(from_).script.hangup_after
            if hangup_after is not None:
                call.hangup_timer = self._sb.scheduler.call_later(
                    hangup_after, lambda: self.hangup(call)
                )
            await self._run_twiml(call)

        def begin() -> None:
            call.task = self._sb.scheduler.start_now(answer())

        self._sb.scheduler.call_later(0, begin)
        return call
