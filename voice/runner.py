"""The runner: feeds one party line's events to the machine and carries out its actions.

A `Runner` lives for one transaction. `Runner.load` takes the party line's row lock (a write
first: a row lock on PostgreSQL, the write lock on SQLite), so callbacks, jobs and the API
apply events to one party line one at a time, in the order they got the lock, and each sees
the state the previous one stored.

Actions that only touch the database are done at once, in the same transaction: the gate,
holding and releasing reps, the opt-out ledger, a text back, the end of the party line. What
the play must hear (activities, the gate's decision, the lead pressing 9, the end) is kept in
`reports`, in order; the job or route that fed the runner hands them to the engine
(`gateway.engine.lifecycle.on_party_line_reports`) before the same transaction commits. TwiML
for the call whose request is being answered becomes the answer; every other Twilio request
goes to the row's outbox for the `party_lines.run` job, so no lock is held while we wait for
Twilio.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from compliance.gate import GateDecision
from gateway import gate, optouts
from gateway.clock import now
from gateway.contact_lock import lock_contact
from gateway.models import (
    Account,
    Channel,
    Lead,
    LedgerEvent,
    LedgerSource,
    PartyLineRecord,
    Play,
    Purpose,
)
from gateway.sms.outbox import queue_message
from gateway.work import PARTY_LINE_RUN, stage
from voice import rep_pool, twiml
from voice.actions import (
    Action,
    CallLead,
    CallRep,
    CancelCall,
    CheckGate,
    ChooseRep,
    End,
    Hangup,
    JoinConference,
    LeaveVoicemail,
    OfferCallback,
    RecordActivity,
    RecordOptOut,
    ReleaseRep,
    SendTextBack,
)
from voice.events import (
    CallNotPlaced,
    Event,
    GateDecided,
    LeadRetryDue,
    NoRepAvailable,
    RepChosen,
    Start,
    WatchdogFired,
)
from voice.links import Links
from voice.machine import step
from voice.policy import Policy
from voice.states import PartyLine
from voice.steps import WAITING
from voice.twilio_work import call_item, cancel_item, repeatable, twiml_item

log = logging.getLogger(__name__)

# An outbox item taken by a job this long ago without a result: that job died.
IN_FLIGHT_GRACE = timedelta(seconds=30)
MAX_STEPS_PER_FEED = 50  # events our own actions answer (gate, reps): a guard against loops
TEXT_BACK = "Sorry we missed you! This is {business}. Reply here and we'll get right back to you."
TwimlAction = JoinConference | Hangup | LeaveVoicemail | OfferCallback


@dataclass(frozen=True)
class ActivityRecorded:
    """The machine recorded an activity of the play (an event or an outcome)."""

    kind: Literal["event", "outcome"]
    label: str
    note: str | None


@dataclass(frozen=True)
class GateNoted:
    """The gate decided on the party line's call (a block ends the play)."""

    decision: GateDecision
    step_id: str | None
    party_line_id: str


@dataclass(frozen=True)
class LeadOptedOut:
    """The lead pressed 9: the ledger has it; the lead's plays must hear it."""

    account_id: str
    phone: str


@dataclass(frozen=True)
class PartyLineEnded:
    """The party line ended; what that means for the play is the engine's call."""

    reason: str
    note: str | None
    step_id: str | None  # the call step that started it; None for one started by the API
    party_line_id: str


PlayReport = ActivityRecorded | GateNoted | LeadOptedOut | PartyLineEnded


class Runner:
    """One party line, locked, for the length of one transaction."""

    def __init__(
        self,
        *,
        session: AsyncSession,
        row: PartyLineRecord,
        play: Play,
        lead: Lead,
        account: Account,
        base_url: str,
    ) -> None:
        self.session, self.row, self.play, self.lead, self.account = (
            session,
            row,
            play,
            lead,
            account,
        )
        self.state = PartyLine.from_json(row.state)
        self.policy = Policy.from_json(row.policy)
        self.links = Links(base_url, row.id)
        # False in `party_lines.run` itself, which goes on with the outbox; elsewhere (a
        # callback) a change that leaves outbox work stages a run job named by the version.
        self.stage_runs = True
        self.reply: str | None = None  # TwiML answering the request being handled
        self.reports: list[PlayReport] = []  # for the engine, before the commit (see above)

    @classmethod
    async def load(cls, session: AsyncSession, party_line_id: str, base_url: str) -> Runner | None:
        """The party line under its row lock, or None if there is no such party line."""
        locked = await session.exec(
            update(PartyLineRecord)
            .where(col(PartyLineRecord.id) == party_line_id)
            .values(version=col(PartyLineRecord.version) + 1)
        )
        if locked.rowcount != 1:
            return None
        row = (
            await session.exec(
                select(PartyLineRecord)
                .where(PartyLineRecord.id == party_line_id)
                .execution_options(populate_existing=True)
            )
        ).one()
        play = await session.get(Play, row.play_id, populate_existing=True)
        lead = await session.get(Lead, row.lead_id)
        account = await session.get(Account, row.account_id)
        assert play is not None and lead is not None and account is not None
        return cls(
            session=session, row=row, play=play, lead=lead, account=account, base_url=base_url
        )

    # -- events -------------------------------------------------------------------

    async def feed(self, event: Event, *, request_call: str | None = None) -> None:
        """Apply `event` and everything our own actions answer; `request_call` is the call
        whose TwiML request is being answered (its TwiML goes to `reply`)."""
        pending: deque[Event] = deque([event])
        for _ in range(MAX_STEPS_PER_FEED):
            if not pending:
                break
            current = pending.popleft()
            self.state, actions = step_machine(self.state, current, self.policy)
            for action in actions:
                follow = await self._do(action, request_call)
                if follow is not None:
                    pending.append(follow)
        self._store()

    async def fire_due(self) -> None:
        """Start a new party line; feed a lead retry or the watchdog whose time has come."""
        moment = now()
        if self.state.phase == "gate_pending":
            await self.feed(Start())
        if self.state.retry_at is not None and self.state.retry_at <= moment:
            await self.feed(LeadRetryDue())
        if self.state.watchdog_at is not None and self.state.watchdog_at <= moment:
            await self.feed(WatchdogFired())
        self._store()

    # -- the outbox -----------------------------------------------------------------

    async def take(self) -> dict[str, Any] | None:
        """The next outbox item, marked in flight; None when empty or another run has one."""
        while (item := self._take()) is not None:
            leg = self.state.leg_by_id(str(item.get("leg"))) if item["kind"] == "call" else None
            if leg is None or not (self.state.ended or leg.result is not None):
                return item
            # Decided, then overtaken (the lead hung up, pressed 9): nobody wants this call.
            self.row.in_flight, self.row.in_flight_at = None, None
            await self.feed(CallNotPlaced(leg.leg_id, None, "no longer needed"))
        return None

    def _take(self) -> dict[str, Any] | None:
        row, moment = self.row, now()
        if row.in_flight is not None:
            assert row.in_flight_at is not None
            if moment - row.in_flight_at < IN_FLIGHT_GRACE:
                return None
            stale = row.in_flight
            row.in_flight, row.in_flight_at = None, None
            if repeatable(stale):
                row.outbox = [stale, *row.outbox]
            else:
                # We can't know whether Twilio placed it: its callbacks (which name the leg)
                # will say so, and the watchdog ends the party line if they never come.
                log.warning("party line %s: outcome of %s unknown", row.id, stale.get("leg"))
        if not row.outbox:
            self._store()
            return None
        item, row.outbox = row.outbox[0], list(row.outbox[1:])
        row.in_flight, row.in_flight_at = item, moment
        self._store()
        return item

    async def finish(self, item: dict[str, Any], event: Event | None) -> None:
        """The item's request is done; feed what Twilio answered."""
        if self.row.in_flight == item:
            self.row.in_flight, self.row.in_flight_at = None, None
        if event is not None:
            await self.feed(event)
        self._store()

    # -- TwiML answers -----------------------------------------------------------------

    def lead_document(self, leg_id: str) -> str:
        """The lead's answer: greeting with "press 9", then the conference; or goodbye."""
        lead = self.state.lead
        if lead is None or lead.leg_id != leg_id or self.state.phase not in WAITING:
            return twiml.hangup()
        return twiml.lead_answer(
            greeting=self.row.greeting,
            opt_out_prompt=self.policy.opt_out_prompt,
            gather_url=self.links.lead_gather(leg_id, "greeting"),
            room=self.links.room(self.state.conference_name),
        )

    def rep_document(self, leg_id: str) -> str:
        """The rep's answer: the whisper with "press 1"; or, for a stale attempt, goodbye."""
        rep = self.state.rep
        if rep is None or rep.leg_id != leg_id or rep.result is not None:
            return twiml.hangup("Sorry, this caller is no longer waiting. Goodbye.")
        if self.state.phase not in WAITING:
            return twiml.hangup("Sorry, this caller is no longer waiting. Goodbye.")
        return twiml.rep_whisper(
            whisper=self.row.whisper,
            gather_url=self.links.rep_gather(leg_id),
            timeout=self.policy.whisper_timeout,
        )

    # -- actions ---------------------------------------------------------------------

    async def _do(self, action: Action, request_call: str | None) -> Event | None:
        match action:
            case CheckGate():
                return await self._check_gate()
            case CallLead() | CallRep():
                self.row.outbox = [*self.row.outbox, call_item(action)]
            case ChooseRep():
                held = await rep_pool.choose(
                    self.session,
                    self.play,
                    self.row.id,
                    attempt=action.attempt,
                    exclude=action.exclude,
                )
                if held is None:
                    return NoRepAvailable(action.attempt)
                return RepChosen(held.rep_id, held.phone, action.attempt)
            case ReleaseRep():
                await rep_pool.release(
                    self.session, self.row.account_id, action.rep_id, self.row.id
                )
            case JoinConference() | Hangup() | LeaveVoicemail() | OfferCallback():
                self._twiml(action, request_call)
            case CancelCall():
                if action.call_sid == request_call and self.reply is None:
                    self.reply = twiml.hangup()
                else:
                    self.row.outbox = [
                        *self.row.outbox,
                        cancel_item(action.call_sid, action.reason),
                    ]
            case RecordActivity():
                self.reports.append(ActivityRecorded(action.kind, action.label, action.note))
            case RecordOptOut():
                await self._opt_out(action.call_sid)
            case SendTextBack():
                await self._text_back(action.reason)
            case End():
                await self._ended(action)
        return None  # ScheduleLeadRetry / ScheduleWatchdog: `wake_at` carries them

    def _twiml(self, action: TwimlAction, request_call: str | None) -> None:
        leg = self.state.leg_by_sid(action.call_sid)
        gather = self.links.lead_gather(leg.leg_id if leg else "lead-1", "fallback")
        document = twiml.for_action(
            action, room=self.links.room(self.state.conference_name), gather_url=gather
        )
        if action.call_sid == request_call and self.reply is None:
            self.reply = document
        else:
            self.row.outbox = [*self.row.outbox, twiml_item(action.call_sid, document)]

    async def _check_gate(self) -> Event:
        decision = await gate.decide(
            self.session,
            self.account,
            self.lead.phone,
            channel="call",
            purpose="initiated",
            lead=self.lead,
            play=self.play,
        )
        self.reports.append(GateNoted(decision, self.row.step_id, self.row.id))
        return GateDecided(decision.action, decision.reason, decision.until)

    async def _opt_out(self, call_sid: str) -> None:
        account_id, phone = self.row.account_id, self.lead.phone
        await lock_contact(self.session, account_id, phone)
        if await optouts.is_opted_out(self.session, account_id, phone):
            return
        await optouts.record(
            self.session,
            account_id=account_id,
            phone=phone,
            event=LedgerEvent.OPT_OUT,
            channel=Channel.VOICE,
            source=LedgerSource.KEYPRESS,
            keyword="9",
            call_sid=call_sid,
            inbound_number=self.row.from_number,
            note=f"pressed 9 on party line {self.row.id}",
        )
        self.reports.append(LeadOptedOut(account_id, phone))

    async def _text_back(self, reason: str) -> None:
        await queue_message(
            self.session,
            account_id=self.row.account_id,
            phone=self.lead.phone,
            body=TEXT_BACK.format(business=self.policy.business_name),
            purpose=Purpose.INITIATED if self.play.last_lead_reply_at is None else Purpose.REPLY,
            reason=f"party line {reason}",
            lead_id=self.lead.id,
            play_id=self.play.id,
        )

    async def _ended(self, action: End) -> None:
        row = self.row
        row.end_reason, row.ended_at = action.reason, row.ended_at or now()
        await rep_pool.release_all(self.session, row.account_id, row.id)
        # What the end means for the play (its outcome, or its next step) is the engine's call.
        self.reports.append(PartyLineEnded(action.reason, action.note, row.step_id, row.id))

    def _store(self) -> None:
        row, state = self.row, self.state
        row.state = state.to_json()
        row.phase = state.phase
        row.end_reason = state.end_reason or row.end_reason
        if state.ended and row.ended_at is None:
            row.ended_at = state.ended_at or now()
        row.conference_sid = state.conference_sid
        row.connected_rep_id = state.connected_rep_id
        row.wake_at = self._wake_at()
        row.updated_at = now()
        if self.stage_runs and row.outbox and row.in_flight is None:
            stage(self.session, PARTY_LINE_RUN, row.id, variant=row.version)
        self.session.add(row)

    def _wake_at(self) -> datetime | None:
        row, state = self.row, self.state
        times = [t for t in (state.retry_at, state.watchdog_at) if t is not None]
        if row.in_flight is not None and row.in_flight_at is not None:
            times.append(row.in_flight_at + IN_FLIGHT_GRACE)
        elif row.outbox or state.phase == "gate_pending":
            times.append(now())
        return min(times) if times else None


def step_machine(state: PartyLine, event: Event, policy: Policy) -> tuple[PartyLine, list[Action]]:
    """`voice.machine.step` at the gateway's clock."""
    return step(state, event, now=now(), policy=policy)
