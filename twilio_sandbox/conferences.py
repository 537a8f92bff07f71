"""Conferences and their participants: joining, leaving, ending, and their callbacks."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from twilio_sandbox.scheduler import Wake
from twilio_sandbox.wire import API_VERSION, Form, TwilioError, new_sid, parse_bool, rfc2822

if TYPE_CHECKING:
    from twilio_sandbox.calls import Call
    from twilio_sandbox.sandbox import Sandbox

# TwiML / API event words -> the StatusCallbackEvent values Twilio posts.
EVENT_WORD = {
    "conference-start": "start",
    "conference-end": "end",
    "participant-join": "join",
    "participant-leave": "leave",
    "participant-mute": "mute",
    "participant-unmute": "mute",
    "participant-hold": "hold",
    "participant-unhold": "hold",
}


@dataclass
class JoinOptions:
    """How a call enters a conference (from <Conference> or Participants.create)."""

    name: str
    start_on_enter: bool = True
    end_on_exit: bool = False
    muted: bool = False
    beep: str = "true"
    wait_url: str | None = None
    label: str | None = None
    coaching: bool = False
    status_callback: str | None = None
    status_callback_method: str = "POST"
    events: set[str] = field(default_factory=set)


@dataclass
class Participant:
    call_sid: str
    conference_sid: str
    account_sid: str
    options: JoinOptions
    status: str  # queued | connecting | ringing | connected | complete | failed
    date_created: datetime
    date_updated: datetime
    muted: bool = False
    hold: bool = False
    leave_wake: Wake | None = None

    def to_json(self) -> dict[str, Any]:
        conf = f"/{API_VERSION}/Accounts/{self.account_sid}/Conferences/{self.conference_sid}"
        return {
            "account_sid": self.account_sid,
            "call_sid": self.call_sid,
            "call_sid_to_coach": None,
            "coaching": self.options.coaching,
            "conference_sid": self.conference_sid,
            "date_created": rfc2822(self.date_created),
            "date_updated": rfc2822(self.date_updated),
            "end_conference_on_exit": self.options.end_on_exit,
            "hold": self.hold,
            "label": self.options.label,
            "muted": self.muted,
            "queue_time": "0",
            "start_conference_on_enter": self.options.start_on_enter,
            "status": self.status,
            "uri": f"{conf}/Participants/{self.call_sid}.json",
        }


@dataclass
class Conference:
    sid: str
    account_sid: str
    friendly_name: str
    date_created: datetime
    date_updated: datetime
    status: str = "init"  # init | in-progress | completed
    reason_ended: str | None = None
    call_sid_ending: str | None = None
    status_callback: str | None = None
    status_callback_method: str = "POST"
    events: set[str] = field(default_factory=set)
    sequence: int = 0
    participants: dict[str, Participant] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Conferences/{self.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "call_sid_ending_conference": self.call_sid_ending,
            "date_created": rfc2822(self.date_created),
            "date_updated": rfc2822(self.date_updated),
            "friendly_name": self.friendly_name,
            "reason_conference_ended": self.reason_ended,
            "region": "us1",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {
                "participants": f"{base}/Participants.json",
                "recordings": f"{base}/Recordings.json",
            },
            "uri": f"{base}.json",
        }


def event_words(values: list[str]) -> set[str]:
    return {word.strip().lower() for v in values for word in v.replace(",", " ").split()}


class Conferences:
    """Every conference of the account, live or ended."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sb = sandbox
        self.conferences: dict[str, Conference] = {}

    def live(self, name: str) -> Conference:
        """The conference currently using `name`, created (status init) if none is."""
        for conf in self.conferences.values():
            if conf.friendly_name == name and conf.status != "completed":
                return conf
        now = self._sb.clock.now()
        conf = Conference(new_sid("CF"), self._sb.account_sid, name, now, now)
        self.conferences[conf.sid] = conf
        return conf

    def get(self, sid_or_name: str) -> Conference:
        if sid_or_name in self.conferences:
            return self.conferences[sid_or_name]
        if sid_or_name.startswith("CF") and len(sid_or_name) == 34:
            raise TwilioError(20404, status=404, path=f"/Conferences/{sid_or_name}.json")
        return self.live(sid_or_name)

    def participant(self, conference_sid: str, call_sid: str) -> Participant:
        conf = self.get(conference_sid)
        for p in conf.participants.values():
            if call_sid in (p.call_sid, p.options.label):
                return p
        raise TwilioError(20404, status=404, path=f"/Participants/{call_sid}.json")

    # -- membership -----------------------------------------------------------

    async def sit(self, call: Call, options: JoinOptions) -> None:
        """Join `call` to the conference and park until it leaves (end, kick, hangup)."""
        participant = self.join(call, options)
        wake = self._sb.scheduler.new_wake()
        participant.leave_wake = wake
        await self._sb.scheduler.park(wake)

    def join(self, call: Call, options: JoinOptions) -> Participant:
        conf = self.live(options.name)
        if conf.status_callback is None and options.status_callback:
            conf.status_callback = options.status_callback
            conf.status_callback_method = options.status_callback_method
            conf.events = options.events or {"start", "end"}
        now = self._sb.clock.now()
        p = conf.participants.get(call.sid)
        if p is None:
            p = Participant(call.sid, conf.sid, conf.account_sid, options, "connected", now, now)
            conf.participants[call.sid] = p
        p.status, p.muted, p.date_updated = "connected", options.muted, now
        call.conference_sid = conf.sid
        self._emit(conf, "participant-join", p)
        if conf.status == "init" and options.start_on_enter:
            conf.status = "in-progress"
            self._emit(conf, "conference-start")
        return p

    def expect(self, conf: Conference, call: Call, options: JoinOptions) -> Participant:
        """A Participants.create call that is still ringing: listed as queued."""
        now = self._sb.clock.now()
        p = Participant(call.sid, conf.sid, conf.account_sid, options, "queued", now, now)
        conf.participants[call.sid] = p
        return p

    def leave(self, call: Call, *, kicked: bool) -> None:
        """Take the call out of its conference; may end the conference."""
        conf = self.conferences.get(call.conference_sid or "")
        call.conference_sid = None
        if conf is None or call.sid not in conf.participants:
            return
        p = conf.participants.pop(call.sid)
        p.status, p.date_updated = "complete", self._sb.clock.now()
        self._emit(conf, "participant-leave", p)
        if p.leave_wake is not None:
            self._sb.scheduler.wake(p.leave_wake)
        connected = [q for q in conf.participants.values() if q.status == "connected"]
        if conf.status == "completed":
            return
        if p.options.end_on_exit:
            self.end(conf, "participant-with-end-conference-on-exit-left", call.sid)
        elif not connected:
            reason = "last-participant-kicked" if kicked else "last-participant-left"
            self.end(conf, reason, call.sid)

    def dropped(self, call: Call) -> None:
        """A Participants.create call that never connected (busy, no answer...)."""
        for conf in self.conferences.values():
            p = conf.participants.get(call.sid)
            if p is not None and p.status != "connected":
                del conf.participants[call.sid]
                if not conf.participants and conf.status == "init":
                    conf.status = "completed"

    def end(self, conf: Conference, reason: str, call_sid: str | None) -> None:
        if conf.status == "completed":
            return
        conf.status, conf.reason_ended, conf.call_sid_ending = "completed", reason, call_sid
        conf.date_updated = self._sb.clock.now()
        for p in list(conf.participants.values()):
            del conf.participants[p.call_sid]
            call = self._sb.calls.calls.get(p.call_sid)
            if call is not None:
                call.conference_sid = None
            if p.status == "connected":
                p.status = "complete"
                self._emit(conf, "participant-leave", p)
            if p.leave_wake is not None:
                self._sb.scheduler.wake(p.leave_wake)
        self._emit(conf, "conference-end")

    # -- REST -----------------------------------------------------------------

    def add_participant(self, sid_or_name: str, form: Form) -> Participant:
        """Participants.create: dial `To` and put the call into the conference on answer."""
        to, from_ = form.get("To"), form.get("From")
        self._sb.calls.check_numbers(to, from_)
        conf = self.get(sid_or_name)
        options = JoinOptions(
            name=conf.friendly_name,
            start_on_enter=parse_bool(form.get("StartConferenceOnEnter"), True),
            end_on_exit=parse_bool(form.get("EndConferenceOnExit")),
            muted=parse_bool(form.get("Muted")),
            beep=form.get("Beep") or "true",
            wait_url=form.get("WaitUrl") or None,
            label=form.get("Label") or None,
            coaching=parse_bool(form.get("Coaching")),
            status_callback=form.get("ConferenceStatusCallback") or None,
            status_callback_method=form.get("ConferenceStatusCallbackMethod") or "POST",
            events=event_words(form.getall("ConferenceStatusCallbackEvent")),
        )
        call = self._sb.calls.new(to, from_, "outbound-api", form)
        call.join = options
        participant = self.expect(conf, call, options)
        self._sb.calls.start(call)
        return participant

    def update(self, sid: str, form: Form) -> Conference:
        conf = self.get(sid)
        if form.get("Status") == "completed":
            self.end(conf, "conference-ended-via-API", None)
        return conf

    def update_participant(self, conference_sid: str, call_sid: str, form: Form) -> Participant:
        p = self.participant(conference_sid, call_sid)
        conf = self.get(conference_sid)
        if "Muted" in form and parse_bool(form.get("Muted")) != p.muted:
            p.muted = not p.muted
            self._emit(conf, "participant-mute" if p.muted else "participant-unmute", p)
        if "Hold" in form and parse_bool(form.get("Hold")) != p.hold:
            p.hold = not p.hold
            self._emit(conf, "participant-hold" if p.hold else "participant-unhold", p)
        p.date_updated = self._sb.clock.now()
        return p

    def kick(self, conference_sid: str, call_sid: str) -> tuple[None, int]:
        """Participants(call).delete: answers 204 with no body."""
        p = self.participant(conference_sid, call_sid)
        call = self._sb.calls.get(p.call_sid)
        if p.status == "connected":
            self.leave(call, kicked=True)
        else:
            self._sb.calls.hangup(call, "canceled")
        return None, 204

    # -- callbacks ------------------------------------------------------------

    def _emit(self, conf: Conference, event: str, p: Participant | None = None) -> None:
        if not conf.status_callback or EVENT_WORD[event] not in conf.events:
            return
        conf.sequence += 1
        params = {
            "AccountSid": conf.account_sid,
            "ConferenceSid": conf.sid,
            "FriendlyName": conf.friendly_name,
            "SequenceNumber": str(conf.sequence),
            "StatusCallbackEvent": event,
            "Timestamp": str(rfc2822(self._sb.clock.now())),
        }
        if p is not None:
            params.update(
                CallSid=p.call_sid,
                Coaching=str(p.options.coaching).lower(),
                EndConferenceOnExit=str(p.options.end_on_exit).lower(),
                Hold=str(p.hold).lower(),
                Muted=str(p.muted).lower(),
                StartConferenceOnEnter=str(p.options.start_on_enter).lower(),
            )
            if p.options.label:
                params["ParticipantLabel"] = p.options.label
        if event == "conference-end":
            params["ReasonConferenceEnded"] = conf.reason_ended or ""
            if conf.call_sid_ending:
                params["CallSidEndingConference"] = conf.call_sid_ending
        self._sb.webhooks.post(
            conf.sid,
            "conference.status",
            conf.status_callback,
            params,
            method=conf.status_callback_method,
        )
