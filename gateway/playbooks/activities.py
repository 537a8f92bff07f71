"""Activity labels: the events and outcomes a play can record and webhooks can subscribe to."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ActivityKind = Literal["event", "outcome"]

# Produced by the engine (and the voice layer) for every playbook; a playbook uses them
# without declaring them.
BUILTIN_EVENTS: tuple[str, ...] = (
    "started",
    "interested",
    "stopped",
    "completed",
    "reengagement_sent",
    "talk_to_human",
    "party_line_lead_attempted",
    "party_line_lead_answered",
    "party_line_rep_attempted",
    "party_line_rep_unsuccessful",
    "catch_all_level1",
    "catch_all_level2",
    "catch_all_level3",
    "human_replied",  # a person's text in the conversation (POST /v1/plays/{id}/messages)
    "resumed",  # back to the playbook at a step (POST /v1/plays/{id}/resume)
    "rep_assigned",  # POST /v1/leads/{id}/assign (gateway/api/assignments.py)
    "rep_unassigned",
)
# Outcomes the engine and the voice layer record on their own (a STOP, a finished party line),
# so every playbook can produce them whether it declares them or not.
# (How each end of a party line ends the play: gateway/engine/lifecycle.py, README.md.)
ENGINE_OUTCOMES: tuple[str, ...] = (
    "opted_out",
    "party_line_completed",
    "callback_requested",
    "rep_unsuccessful",
)
# The common vocabulary; a playbook declares the ones it uses (plus any custom ones).
STANDARD_OUTCOMES: tuple[str, ...] = (
    "qualified",
    "unqualified",
    "callback_requested",
    "textback_requested",
    "scheduled",
    "party_line_completed",
    "opted_out",
)
LABEL_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"

Label = Annotated[
    str,
    Field(
        pattern=LABEL_PATTERN,
        description="lowercase letters, digits and underscores, starting with a letter",
    ),
]


class Activities(BaseModel):
    """The activities a playbook declares: custom events, and the outcomes it can end with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    events: list[Label] = Field(
        default_factory=list,
        description="custom events, in addition to the built-in engine events",
    )
    outcomes: list[Label] = Field(
        default_factory=list,
        description="outcomes the playbook's steps and choices can record",
    )
    repeatable: list[Label] = Field(
        default_factory=list,
        description="events a choice may record more than once in a play (otherwise once)",
    )

    @model_validator(mode="after")
    def _repeatable_are_events(self) -> Activities:
        events = set(BUILTIN_EVENTS) | set(self.events)
        for label in self.repeatable:
            if label not in events:
                raise ValueError(f"repeatable: {label!r} is not an event (built-in or declared)")
        return self

    def labels(self) -> dict[str, ActivityKind]:
        """Every label a play of this playbook can record: built-ins first, then declared."""
        result: dict[str, ActivityKind] = dict.fromkeys(BUILTIN_EVENTS, "event")
        for outcome in ENGINE_OUTCOMES:
            result[outcome] = "outcome"
        for event in self.events:
            result.setdefault(event, "event")
        for outcome in self.outcomes:
            result.setdefault(outcome, "outcome")
        return result
