"""The playbook document and the navigation API the engine walks plays with.

A `Playbook` built by `Playbook.model_validate` is only structurally valid; publish and run
only what `validate_playbook` / `parse_playbook` accepted (ids resolve, labels are declared,
templates resolve at every step, no loop runs without the lead).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr

from gateway.playbooks import graph
from gateway.playbooks.activities import Activities, ActivityKind
from gateway.playbooks.capture import CaptureValue
from gateway.playbooks.durations import Duration
from gateway.playbooks.matching import read_reply
from gateway.playbooks.steps import (
    END,
    AnyStep,
    AskStep,
    CallStep,
    CatchAll,
    Choice,
    EmailAddress,
    GotoStep,
    Identifier,
    Model,
    SendStep,
    SettingValue,
    SmsTemplate,
    Step,
    WaitStep,
)

DEFAULT_CATCH_ALL = CatchAll(
    level1="Sorry, I didn't catch that. Could you reply with one of the options above?",
    level2="Sorry, I'm still not sure what you mean. Could you say it another way?",
    level3="Thanks! Someone from our team will follow up with you personally.",
)
ADDITIONAL_INFO_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$"
AdditionalInfoKey = Annotated[str, Field(pattern=ADDITIONAL_INFO_KEY_PATTERN, max_length=200)]


class Reengagement(Model):
    """After `after` of lead silence on an open question, send `text`; at most `max` times."""

    after: Duration
    max: int = Field(1, ge=1, le=10)
    text: SmsTemplate


class EmailDefaults(Model):
    """Sender defaults for the playbook's email steps (a step may override them)."""

    from_: EmailAddress | None = Field(None, alias="from")
    reply_to: EmailAddress | None = None


class RepNotify(Model):
    """How the rep a play's lead is assigned to hears of it (on assignment and on
    `talk_to_human`); a source rule's `notify` overrides each channel it names."""

    sms: bool = Field(True, description="text the rep's phone")
    email: bool = Field(False, description="email the rep's address (reps without one: none)")


@dataclass(frozen=True)
class ChoiceAction:
    """What the engine does when a choice of an ask matched, in this order.

    1. store `capture` = `captured` in the lead's additional_info (and the play's answers);
    2. send `reply` (a template) if any; 3. record `event` if any;
    4. record `outcome` and end the play, or else continue at `next_step` (None: the play ends).
    """

    ask_id: str
    choice: Choice
    index: int
    capture: str | None
    captured: CaptureValue | None
    reply: str | None
    event: str | None
    outcome: str | None
    next_step: str | None


class Playbook(Model):
    """A playbook document: settings, activities, steps and play-wide options."""

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    settings: dict[Identifier, SettingValue] = Field(
        default_factory=dict,
        description="runtime settings and their defaults; null = the play must provide it",
    )
    expects_additional_info: list[AdditionalInfoKey] = Field(
        default_factory=list,
        description="additional_info keys every lead is expected to have (no fallback needed)",
    )
    activities: Activities = Field(default_factory=Activities)
    catch_all: CatchAll = Field(
        default_factory=CatchAll, description="default catch-all messages for every ask"
    )
    reengagement: Reengagement | None = None
    halt_drip_on_reply: bool = Field(
        True, description="a reply or an answered/inbound call halts timed drip steps"
    )
    on_failure: Literal["halt", "skip"] = Field(
        "halt",
        description="a failed action (bad number, invalid email) ends the play or is skipped",
    )
    email_after_opt_out: bool = Field(
        False, description="whether email steps continue after the lead opts out of SMS"
    )
    email: EmailDefaults = Field(default_factory=EmailDefaults)
    notify: RepNotify = Field(default_factory=RepNotify)
    steps: list[Step] = Field(min_length=1)

    _index: dict[str, int] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        """Index step ids (the first of duplicates wins; validation rejects duplicates)."""
        for i, step in enumerate(self.steps):
            self._index.setdefault(step.id, i)

    # -- navigation (what the engine calls) ---------------------------------------------

    def start(self) -> AnyStep:
        """The step every play begins with: the first one."""
        return self.steps[0]

    def step(self, step_id: str) -> AnyStep:
        """The step with this id; KeyError if there is none."""
        return self.steps[self._index[step_id]]

    def has_step(self, step_id: str) -> bool:
        """Whether a step with this id exists."""
        return step_id in self._index

    def index(self, step_id: str) -> int:
        """Position of a step in `steps`; KeyError if unknown."""
        return self._index[step_id]

    def _resolve(self, target: str | None, after: int) -> AnyStep | None:
        if target == END:
            return None
        if target is None:
            return self.steps[after + 1] if after + 1 < len(self.steps) else None
        return self.step(target)

    def next_step(self, after_id: str) -> AnyStep | None:
        """Where a play goes when step `after_id` is done; None when the play ends there.

        send, call, wait: their `next` (default: the following step). ask: the continuation
        for choices without `goto` or `outcome` (use `choice_action` for a reply). goto and
        outcome steps end the play.
        """
        step = self.step(after_id)
        if isinstance(step, SendStep | CallStep | WaitStep | AskStep):
            return self._resolve(step.next, self.index(after_id))
        return None

    def choice_action(
        self, ask_id: str, choice: Choice | int, captured: CaptureValue | None = None
    ) -> ChoiceAction:
        """Resolve a choice of an ask (the object or its index) into the engine's action."""
        ask = self.step(ask_id)
        if not isinstance(ask, AskStep):
            raise TypeError(f"step {ask_id!r} is a {ask.kind}, not an ask")
        if isinstance(choice, int):
            index = choice
            choice = ask.choices[index]
        else:
            # Identity first: two choices of one ask may be equal field for field.
            index = next((i for i, c in enumerate(ask.choices) if c is choice), -1)
            if index < 0:
                index = ask.choices.index(choice)  # ValueError: not a choice of this ask
        if choice.outcome is not None:
            following = None
        elif choice.goto is not None:
            following = self._resolve(choice.goto, self.index(ask_id))
        else:
            following = self.next_step(ask_id)
        return ChoiceAction(
            ask_id=ask_id,
            choice=choice,
            index=index,
            capture=choice.capture,
            captured=captured if choice.capture is not None else None,
            reply=choice.reply,
            event=choice.event,
            outcome=choice.outcome,
            next_step=None if following is None else following.id,
        )

    def read_reply(self, ask_id: str, text: str) -> ChoiceAction | None:
        """Match a lead's reply to ask `ask_id` and resolve it; None means catch-all."""
        ask = self.step(ask_id)
        if not isinstance(ask, AskStep):
            raise TypeError(f"step {ask_id!r} is a {ask.kind}, not an ask")
        found = read_reply(ask, text)
        if found is None:
            return None
        return self.choice_action(ask_id, found.choice, found.captured)

    def catch_all_for(self, ask_id: str) -> CatchAll:
        """The catch-all messages of an ask: its own, else the playbook's, else the defaults."""
        ask = self.step(ask_id)
        own = ask.catch_all if isinstance(ask, AskStep) and ask.catch_all else CatchAll()
        levels = {
            f"level{n}": own.message(n) or self.catch_all.message(n) or DEFAULT_CATCH_ALL.message(n)
            for n in (1, 2, 3)
        }
        return CatchAll.model_validate(levels)

    # -- facts about the playbook ----------------------------------------------------

    def activity_labels(self) -> dict[str, ActivityKind]:
        """Every activity label a play can record: built-in events and engine outcomes first."""
        return self.activities.labels()

    def first_send_steps(self) -> list[SendStep | AskStep]:
        """The SMS send/ask steps that can be the first text of a play (for segment warnings)."""
        edges = graph.edges(self.steps, self._index)
        found = [self.steps[i] for i in graph.first_sms_steps(self.steps, edges)]
        return [s for s in found if isinstance(s, SendStep | AskStep)]

    def transitions(self) -> list[str]:
        """Ids of the playbooks this one can hand a lead to (goto steps), in step order."""
        return list(dict.fromkeys(s.playbook for s in self.steps if isinstance(s, GotoStep)))

    def required_settings(self) -> list[str]:
        """Settings without a default: a play must provide them."""
        return [key for key, value in self.settings.items() if value is None]

    def effective_settings(
        self, overrides: Mapping[str, str | int | float | bool | None] | None = None
    ) -> dict[str, str | int | float | bool | None]:
        """Playbook defaults with a play's overrides; ValueError names any missing required one.

        Unknown override keys are kept: templates can't use them, but a `goto` passes them on.
        """
        merged: dict[str, str | int | float | bool | None] = {**self.settings, **(overrides or {})}
        missing = [key for key, value in merged.items() if value is None and key in self.settings]
        if missing:
            raise ValueError(f"missing required settings: {', '.join(sorted(missing))}")
        return merged
