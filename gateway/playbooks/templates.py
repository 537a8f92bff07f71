"""The message template language: text with `{namespace.path|fallback}` variables, nothing else.

Deliberately not Jinja: templates come from customers' playbooks and end up in texts to
strangers, so there is no code, no filters, no loops, nothing that can fail or run at send time.
Publishing a playbook checks every variable against what can exist at that step
(see validate.py), which is why `render` can promise never to raise.

Syntax:
    {lead.first_name}            a lead field
    {lead.first_name|there}      with a fallback when the value is missing or empty
    {lead.first_name|}           an explicitly empty fallback
    {lead.additional_info.loan_amount}
    {settings.agent_name}        a playbook setting (defaults overridable per play)
    {answers.loan_amount}        an answer captured by an earlier `ask`
    {{ and }}                    literal braces
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Namespace = Literal["lead", "settings", "answers"]
NAMESPACES: tuple[Namespace, ...] = ("lead", "settings", "answers")
# Lead columns a template may use; `phone` is the only one every lead has.
LEAD_FIELDS = ("first_name", "last_name", "email", "phone", "state", "postal_code")
ALWAYS_PRESENT_LEAD_FIELDS = frozenset({"phone"})
ADDITIONAL_INFO = "additional_info"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")


class TemplateSyntaxError(ValueError):
    """A template that can't be parsed; `position` is the 0-based character offset."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at character {position + 1})")
        self.position = position


@dataclass(frozen=True)
class Variable:
    """One `{...}` of a template: `{lead.first_name|there}` is lead, (first_name,), "there"."""

    namespace: str
    path: tuple[str, ...]
    fallback: str | None = None  # None: no fallback written; "" is an explicit empty fallback

    @property
    def name(self) -> str:
        """The dotted name as written, without the fallback: `lead.first_name`."""
        return ".".join((self.namespace, *self.path))

    @property
    def has_fallback(self) -> bool:
        """Whether the template says what to print when the value is missing."""
        return self.fallback is not None


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text and variables in order."""

    source: str
    parts: tuple[str | Variable, ...]

    @property
    def variables(self) -> tuple[Variable, ...]:
        """The variables, in order of appearance (repeats included)."""
        return tuple(part for part in self.parts if isinstance(part, Variable))


@dataclass(frozen=True)
class TemplateContext:
    """What a template can see at run time; the engine builds one per rendered message.

    `lead` holds the lead's fields plus `additional_info` (a dict); `settings` the play's
    effective settings (playbook defaults with the play's overrides); `answers` the values
    captured so far in this play.
    """

    lead: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    answers: Mapping[str, Any] = field(default_factory=dict)


@functools.lru_cache(maxsize=4096)
def parse_template(source: str) -> Template:
    """Parse a template; TemplateSyntaxError on unbalanced braces or a malformed variable."""
    parts: list[str | Variable] = []
    literal: list[str] = []
    i = 0
    while i < len(source):
        ch = source[i]
        if ch == "{" and source.startswith("{{", i):
            literal.append("{")
            i += 2
        elif ch == "}" and source.startswith("}}", i):
            literal.append("}")
            i += 2
        elif ch == "}":
            raise TemplateSyntaxError("unmatched '}' (write '}}' for a literal brace)", i)
        elif ch == "{":
            end = source.find("}", i + 1)
            if end == -1:
                raise TemplateSyntaxError("unclosed '{' (write '{{' for a literal brace)", i)
            inner = source[i + 1 : end]
            if "{" in inner:
                raise TemplateSyntaxError("'{' inside a variable", i + 1 + inner.index("{"))
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(_variable(inner, i))
            i = end + 1
        else:
            literal.append(ch)
            i += 1
    if literal:
        parts.append("".join(literal))
    return Template(source=source, parts=tuple(parts))


def _variable(inner: str, position: int) -> Variable:
    name, bar, fallback = inner.partition("|")
    name = name.strip()
    if not name:
        raise TemplateSyntaxError("empty variable '{}'", position)
    if not _NAME.fullmatch(name):
        raise TemplateSyntaxError(f"malformed variable name {{{name}}}", position)
    namespace, _, rest = name.partition(".")
    if namespace not in NAMESPACES:
        raise TemplateSyntaxError(
            f"unknown variable {{{name}}}: names start with lead., settings. or answers.",
            position,
        )
    if not rest:
        raise TemplateSyntaxError(f"{{{name}}} needs a field, like {{{namespace}.name}}", position)
    return Variable(namespace, tuple(rest.split(".")), fallback if bar else None)


def lookup(variable: Variable, context: TemplateContext) -> Any:
    """The raw value of a variable in a context, None when any step of the path is missing."""
    current: Any = {
        "lead": context.lead,
        "settings": context.settings,
        "answers": context.answers,
    }.get(variable.namespace)
    for key in variable.path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


def format_value(value: Any) -> str:
    """How a value prints in a text: 250000.0 -> "250000", True -> "yes", dicts as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str | int):
        return str(value)
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except ValueError:  # circular structures; never raise while sending
        return ""


def render(template: str | Template, context: TemplateContext) -> str:
    """Render a template; never raises (a missing value prints its fallback, or nothing).

    Templates are validated when the playbook is published, so a malformed one only reaches
    here if a caller skipped validation; it is then sent as written rather than failing a send.
    """
    try:
        parsed = template if isinstance(template, Template) else parse_template(template)
    except TemplateSyntaxError:
        return str(template)
    out: list[str] = []
    for part in parsed.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        try:
            text = format_value(lookup(part, context))
        except Exception:  # a hostile __str__ in additional_info must not break a send
            text = ""
        if text == "" and part.fallback is not None:
            text = part.fallback
        out.append(text)
    return "".join(out)
