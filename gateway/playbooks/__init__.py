"""Playbook definitions: the document format, its validation, templates, reply matching.

Pure definitions, no database or web code: the engine (gateway's jobs) executes what this
package describes. See README.md in this folder for the format.
"""

from gateway.playbooks.activities import (
    BUILTIN_EVENTS,
    ENGINE_OUTCOMES,
    STANDARD_OUTCOMES,
    Activities,
    ActivityKind,
)
from gateway.playbooks.capture import CaptureParser, CaptureValue, parse_capture
from gateway.playbooks.definition import (
    DEFAULT_CATCH_ALL,
    ChoiceAction,
    EmailDefaults,
    Playbook,
    Reengagement,
    RepNotify,
)
from gateway.playbooks.durations import Duration, format_duration, parse_duration
from gateway.playbooks.loading import load_document, parse_playbook, validate_document
from gateway.playbooks.matching import ReplyMatch, match_reply, read_reply, tokens
from gateway.playbooks.report import Issue, PlaybookInvalid, ValidationReport
from gateway.playbooks.steps import (
    END,
    PLAYBOOK_ID_PATTERN,
    AnyStep,
    AskStep,
    CallStep,
    CatchAll,
    Choice,
    GotoStep,
    OutcomeStep,
    SendStep,
    WaitStep,
    check_playbook_id,
)
from gateway.playbooks.templates import (
    Template,
    TemplateContext,
    TemplateSyntaxError,
    Variable,
    parse_template,
    render,
)
from gateway.playbooks.validate import validate_playbook

__all__ = [
    "BUILTIN_EVENTS",
    "DEFAULT_CATCH_ALL",
    "END",
    "ENGINE_OUTCOMES",
    "PLAYBOOK_ID_PATTERN",
    "STANDARD_OUTCOMES",
    "Activities",
    "ActivityKind",
    "AnyStep",
    "AskStep",
    "CallStep",
    "CaptureParser",
    "CaptureValue",
    "CatchAll",
    "Choice",
    "ChoiceAction",
    "Duration",
    "EmailDefaults",
    "GotoStep",
    "Issue",
    "OutcomeStep",
    "Playbook",
    "PlaybookInvalid",
    "Reengagement",
    "RepNotify",
    "ReplyMatch",
    "SendStep",
    "Template",
    "TemplateContext",
    "TemplateSyntaxError",
    "ValidationReport",
    "Variable",
    "WaitStep",
    "check_playbook_id",
    "format_duration",
    "load_document",
    "match_reply",
    "parse_capture",
    "parse_duration",
    "parse_playbook",
    "parse_template",
    "read_reply",
    "render",
    "tokens",
    "validate_document",
    "validate_playbook",
]
