"""The party line's pure core, in one import: state, events, actions, policy and `step`.

    from voice.party_line import PartyLine, Policy, Start, step

    state = PartyLine.new(party_line_id, lead_phone, now=now, lead_name="Jane")
    state, actions = step(state, Start(), now=now, policy=policy)
    row.state = state.to_json()            # ... and PartyLine.from_json(row.state) next time

The pieces live in voice.states, voice.events, voice.actions, voice.policy,
voice.machine (with voice.attempts and voice.conference) and voice.twiml.
"""

from __future__ import annotations

from voice.actions import (
    Action,
    ActivityLabel,
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
    ScheduleLeadRetry,
    ScheduleWatchdog,
    SendTextBack,
)
from voice.events import (
    AmdResult,
    CallNotPlaced,
    CallPlaced,
    CallStatusChanged,
    ConferenceStatus,
    Event,
    GateDecided,
    LeadDigits,
    LeadHungUp,
    LeadRetryDue,
    NoRepAvailable,
    RepChosen,
    RepDigits,
    Start,
    WatchdogFired,
)
from voice.machine import step
from voice.policy import Policy
from voice.states import EndReason, Leg, PartyLine, Phase

__all__ = [
    "Action",
    "ActivityLabel",
    "AmdResult",
    "CallLead",
    "CallNotPlaced",
    "CallPlaced",
    "CallRep",
    "CallStatusChanged",
    "CancelCall",
    "CheckGate",
    "ChooseRep",
    "ConferenceStatus",
    "End",
    "EndReason",
    "Event",
    "GateDecided",
    "Hangup",
    "JoinConference",
    "LeadDigits",
    "LeadHungUp",
    "LeadRetryDue",
    "LeaveVoicemail",
    "Leg",
    "NoRepAvailable",
    "OfferCallback",
    "PartyLine",
    "Phase",
    "Policy",
    "RecordActivity",
    "RecordOptOut",
    "ReleaseRep",
    "RepChosen",
    "RepDigits",
    "ScheduleLeadRetry",
    "ScheduleWatchdog",
    "SendTextBack",
    "Start",
    "WatchdogFired",
    "step",
]
