"""Step models: send, ask (with choices and catch-all), call, wait, goto (playbook), outcome.

Field validators here reject what is wrong in a single field (a template that doesn't parse, a
malformed playbook id) with a specific error type, so the
validation report can name it; checks that need the whole playbook live in validate.py.
"""

from __future__ import annotations

import re
from datetime import timedelta
from email.utils import parseaddr
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator
from pydantic_core import PydanticCustomError

from gateway.playbooks.activities import Label
from gateway.playbooks.capture import CaptureParser
from gateway.playbooks.durations import Duration
from gateway.playbooks.matching import keyword_tokens
from gateway.playbooks.templates import TemplateSyntaxError, parse_template

STEP_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
PLAYBOOK_ID_PATTERN = r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$"
IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
END = "end"  # a `next`/`goto` target that ends the play; no step may be called this
MAX_SMS_TEMPLATE = 1600  # Twilio's limit for one message body
MAX_EMAIL_TEMPLATE = 100_000
MAX_PATTERN = 300
MAX_EXAMPLES = 20  # per choice
MAX_EXAMPLE = 160  # characters: one SMS segment
_PLAYBOOK_ID = re.compile(PLAYBOOK_ID_PATTERN)


def _template(value: str) -> str:
    try:
        parse_template(value)
    except TemplateSyntaxError as exc:
        raise PydanticCustomError("template_syntax", "{reason}", {"reason": str(exc)}) from exc
    return value


def _keyword(value: str) -> str:
    if not keyword_tokens(value):
        raise PydanticCustomError(
            "bad_keyword",
            "keyword {keyword} has no letters, digits or emoji to match",
            {"keyword": repr(value)},
        )
    return value


def check_playbook_id(value: str) -> str:
    """Validate a playbook id (lowercase letters, digits, '-' and '_'; up to 64 characters)."""
    if not isinstance(value, str) or not _PLAYBOOK_ID.match(value):
        raise PydanticCustomError(
            "bad_playbook_id",
            "{value} is not a playbook id: use lowercase letters, digits, '-' and '_' "
            "(up to 64, starting and ending with a letter or digit)",
            {"value": repr(value)},
        )
    return value


def _email_address(value: str) -> str:
    _, address = parseaddr(value)
    if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", address):
        raise PydanticCustomError(
            "bad_email",
            "{value} is not an email address (like 'Acme <hi@acme.com>')",
            {"value": repr(value)},
        )
    return value


def _setting_value(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise PydanticCustomError("bad_setting", "a setting is a string, number, true/false or null")


SmsTemplate = Annotated[
    str, Field(min_length=1, max_length=MAX_SMS_TEMPLATE), AfterValidator(_template)
]
EmailTemplate = Annotated[
    str, Field(min_length=1, max_length=MAX_EMAIL_TEMPLATE), AfterValidator(_template)
]
# Whether RE2 can run a pattern is checked at publish (validate.py), not here: playbooks stored
# before RE2 must still load, and their unrunnable patterns then match nothing (patterns.py).
Pattern = Annotated[str, Field(min_length=1, max_length=MAX_PATTERN)]
Keyword = Annotated[
    str,
    # Menu replies ("Reply 1 or 2") arrive from YAML as numbers; they are words here.
    BeforeValidator(lambda v: str(v) if isinstance(v, int) and not isinstance(v, bool) else v),
    Field(min_length=1, max_length=100),
    AfterValidator(_keyword),
]
Example = Annotated[str, Field(min_length=1, max_length=MAX_EXAMPLE)]
StepId = Annotated[str, Field(pattern=STEP_ID_PATTERN)]
Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]
PlaybookId = Annotated[str, PlainValidator(check_playbook_id)]
EmailAddress = Annotated[str, Field(max_length=320), AfterValidator(_email_address)]
SettingValue = Annotated[str | int | float | bool | None, PlainValidator(_setting_value)]


class Model(BaseModel):
    """Base of every playbook model: unknown fields are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CatchAll(Model):
    """Messages for replies that match no choice; a missing level falls back to the default."""

    level1: SmsTemplate | None = Field(None, description="first unmatched reply: re-ask")
    level2: SmsTemplate | None = Field(None, description="second unmatched reply")
    level3: SmsTemplate | None = Field(
        None, description="third: hand over to a human (event talk_to_human, play paused)"
    )

    def message(self, level: int) -> str | None:
        """The template for catch-all level 1, 2 or 3."""
        return {1: self.level1, 2: self.level2, 3: self.level3}.get(level)


class Choice(Model):
    """An accepted response to an ask: what matches it, and what happens then.

    Matching: any keyword (whole words after normalization) or any regex pattern; a capture
    choice without keywords or patterns matches any reply its parser can read.
    Action: `capture` stores the reply, `event` records an event, `reply` answers the lead,
    then the play continues at `goto` (default: the ask's `next`), or ends with `outcome`.
    """

    keywords: list[Keyword] = Field(default_factory=list)
    patterns: list[Pattern] = Field(default_factory=list)
    goto: str | None = Field(None, description="step id to continue at, or 'end'")
    outcome: Label | None = Field(None, description="end the play with this outcome")
    event: Label | None = None
    capture: Identifier | None = Field(
        None, description="store the reply in the lead's additional_info under this key"
    )
    parser: CaptureParser | None = Field(None, description="how to read a capture (default text)")
    reply: SmsTemplate | None = Field(None, description="an SMS sent back when this choice matches")
    examples: list[Example] = Field(
        default_factory=list,
        max_length=MAX_EXAMPLES,
        description="replies this choice is meant to accept (for patterns and captures): "
        "checked at publish against the opt-out rules, and by tests against the matching",
    )

    @property
    def capture_parser(self) -> CaptureParser:
        """The parser a capture uses (`text` when none is given)."""
        return self.parser or "text"


class StepBase(Model):
    """Fields every step has."""

    id: StepId


class SendStep(StepBase):
    """Send an SMS (`text`) or an email (`subject` + `body`) after `delay`."""

    kind: Literal["send"]
    channel: Literal["sms", "email"] = "sms"
    text: SmsTemplate | None = None
    subject: Annotated[str, Field(max_length=998), AfterValidator(_template)] | None = None
    body: EmailTemplate | None = None
    from_: EmailAddress | None = Field(None, alias="from")
    reply_to: EmailAddress | None = None
    delay: Duration = timedelta(0)
    next: str | None = None


class AskStep(StepBase):
    """Text a question and wait for a reply matching one of the `choices`."""

    kind: Literal["ask"]
    text: SmsTemplate
    choices: list[Choice] = Field(min_length=1)
    catch_all: CatchAll | None = None
    delay: Duration = timedelta(0)
    next: str | None = None


class CallStep(StepBase):
    """Start the party line; `whisper` is read to the rep before bridging."""

    kind: Literal["call"]
    whisper: SmsTemplate | None = None
    topic: SmsTemplate | None = None
    delay: Duration = timedelta(0)
    next: str | None = None


class WaitStep(StepBase):
    """Do nothing for `duration`."""

    kind: Literal["wait"]
    duration: Duration
    next: str | None = None


class GotoStep(StepBase):
    """End this play and start `playbook` on the same lead (e.g. an X-date workflow)."""

    kind: Literal["goto"]
    playbook: PlaybookId
    settings: dict[Identifier, SettingValue] = Field(
        default_factory=dict, description="settings overrides for the new play"
    )
    delay: Duration = timedelta(0)


class OutcomeStep(StepBase):
    """End the play with an outcome."""

    kind: Literal["outcome"]
    outcome: Label


Step = Annotated[
    SendStep | AskStep | CallStep | WaitStep | GotoStep | OutcomeStep,
    Field(discriminator="kind"),
]
STEP_KINDS = ("send", "ask", "call", "wait", "goto", "outcome")
AnyStep = SendStep | AskStep | CallStep | WaitStep | GotoStep | OutcomeStep
