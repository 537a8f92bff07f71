"""What a play will do next, and when: `next_action` and `next_action_at` of the plays API.

Read from the play's row (`step_id`, `due_at`, `waiting_reply`, `paused`) and its playbook
version, never stored: the engine's state is the truth and this is a view of it.

| next_action | when | next_action_at |
|---|---|---|
| `send_text` | an SMS send or ask step is due | when it is due |
| `send_email` | an email step is due | when it is due |
| `party_line` | a call step is due, or its party line is under way | when due; null once calling |
| `wait_reply` | the play waits for the lead's answer, with no re-engagement left | null |
| `reengagement` | it waits for the answer, and nudges the lead if none comes | when it nudges |
| `start_playbook` | a `goto` step hands the lead to another playbook | when it is due |
| `record_outcome` | an outcome step ends the play | when it is due |
| `end` | the playbook is done: the play ends | when it is due |
| null | the play has ended, or a person has the conversation (paused) | null |

A wait step is looked through: what follows it is the next action, due after the wait and that
step's own delay.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from gateway.engine.stepper import step_delay
from gateway.models import Play, PlayState
from gateway.playbooks import (
    AskStep,
    CallStep,
    GotoStep,
    OutcomeStep,
    Playbook,
    SendStep,
    WaitStep,
)
from gateway.playbooks.steps import AnyStep

NextAction = Literal[
    "send_text",
    "send_email",
    "party_line",
    "wait_reply",
    "reengagement",
    "start_playbook",
    "record_outcome",
    "end",
]
MAX_LOOK_THROUGH = 50  # waits followed in a row; a playbook has at most 200 steps


def _kind(step: AnyStep) -> NextAction:
    if isinstance(step, SendStep):
        return "send_email" if step.channel == "email" else "send_text"
    if isinstance(step, AskStep):
        return "send_text"
    if isinstance(step, CallStep):
        return "party_line"
    if isinstance(step, GotoStep):
        return "start_playbook"
    if isinstance(step, OutcomeStep):
        return "record_outcome"
    raise TypeError(step.kind)


def next_action(play: Play, playbook: Playbook | None) -> tuple[NextAction | None, datetime | None]:
    """(what, when) the play does next; (None, None) when it has ended or a human has it."""
    if play.state != PlayState.RUNNING:
        return None, None
    step = (
        playbook.step(play.step_id)
        if playbook is not None and play.step_id and playbook.has_step(play.step_id)
        else None
    )
    if play.paused:
        # The engine pauses a play on a call step while its party line runs.
        return ("party_line", None) if isinstance(step, CallStep) else (None, None)
    if play.waiting_reply:
        return ("reengagement", play.due_at) if play.due_at is not None else ("wait_reply", None)
    if play.due_at is None:
        return None, None
    if play.step_id is None:
        return "end", play.due_at
    if step is None or playbook is None:
        return None, play.due_at
    at = play.due_at
    for _ in range(MAX_LOOK_THROUGH):
        if not isinstance(step, WaitStep):
            return _kind(step), at
        following = playbook.next_step(step.id)
        if following is None:
            return "end", at
        at += step_delay(following)  # the engine's own rule: a wait's duration, else `delay`
        step = following
    return None, at
