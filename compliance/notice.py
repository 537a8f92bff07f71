"""The opt-out notice: when a text must carry it, and whether a text already says it.

Carriers (CTIA Messaging Principles) and the TCPA expect a lead to be told how to stop: the
first text a lead receives from a business, and at least one text in every 30 days after
that, carries an opt-out instruction such as "Reply STOP to opt out." The gateway appends the
account's notice to a text unless the lead already got one within `NOTICE_INTERVAL`, or the
text already says it in its own words ("Reply STOP to end", "Text STOP to unsubscribe",
"Responde ALTO para cancelar").

Recognizing "its own words" errs on the side of adding the notice: a doubled instruction
costs a few characters, a missing one is a compliance failure. So only the explicit shapes
are recognized: a send verb followed by an opt-out keyword ("reply STOP", "text END", "reply
with the word STOP") or a clause opening with a keyword, "to" and what it does ("STOP to opt out").
Words are matched after `compliance.keywords` normalization (case, accents, punctuation,
common misspellings such as "txt" or "optout").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from compliance.keywords import Tokens, clauses
from compliance.phrases import OPT_OUT_KEYWORDS

__all__ = [
    "NOTICE_INTERVAL",
    "NoticeChoice",
    "NoticeReason",
    "choose",
    "has_opt_out_instruction",
]

NOTICE_INTERVAL = timedelta(days=30)

# "reply", "text", "send" and their Spanish counterparts, in the forms a sentence uses them.
SEND_VERBS = frozenset(
    {
        *("reply", "replying", "text", "texting", "send", "sending", "respond", "responding"),
        *("responde", "responda", "contesta", "conteste", "envia", "envie", "escribe"),
    }
)
# Words allowed between the verb and the keyword: "reply with the word STOP", "text back END".
BETWEEN = frozenset({"with", "the", "word", "back", "us", "con", "la", "palabra"})
MAX_BETWEEN = 3
# What "KEYWORD to ..." must go on with to be an instruction: "STOP to opt out", "END to quit".
PURPOSES: tuple[Tokens, ...] = (
    ("opt", "out"),
    ("unsubscribe",),
    ("end",),
    ("stop",),
    ("cancel",),
    ("quit",),
    ("be", "removed"),
)
# "text us to stop by" is not "text STOP": a keyword followed by these is a different verb.
NOT_AFTER_KEYWORD = frozenset({"by", "in", "over", "at", "into", "on", "off", "there"})

KEYWORDS: tuple[Tokens, ...] = tuple(
    sorted((tuple(k.split()) for k in OPT_OUT_KEYWORDS), key=len, reverse=True)
)

NoticeReason = Literal["appended", "in_text", "recent", "not_required"]


def _keyword_at(tokens: Tokens, i: int) -> int:
    """Length of the opt-out keyword starting at tokens[i] (0: none)."""
    for keyword in KEYWORDS:
        if tokens[i : i + len(keyword)] == keyword:
            following = tokens[i + len(keyword) : i + len(keyword) + 1]
            if following and following[0] in NOT_AFTER_KEYWORD:
                return 0
            return len(keyword)
    return 0


def _after_verb(tokens: Tokens, verb: int) -> bool:
    for i in range(verb + 1, min(len(tokens), verb + 2 + MAX_BETWEEN)):
        if _keyword_at(tokens, i):
            return True
        if tokens[i] not in BETWEEN:
            return False
    return False


def _keyword_to_purpose(tokens: Tokens, i: int) -> bool:
    size = _keyword_at(tokens, i)
    if not size or tokens[i + size : i + size + 1] != ("to",):
        return False
    rest = tokens[i + size + 1 :]
    return any(rest[: len(p)] == p for p in PURPOSES)


def _clause_instructs(tokens: Tokens) -> bool:
    for i, token in enumerate(tokens):
        if token in SEND_VERBS and _after_verb(tokens, i):
            return True
    # "STOP to opt out" opens its clause; mid-sentence ("we stop to end the day") it is prose.
    return _keyword_to_purpose(tokens, 0)


def has_opt_out_instruction(text: str) -> bool:
    """Whether `text` tells the reader how to opt out ("Reply STOP to end" does)."""
    return any(_clause_instructs(tokens) for tokens in clauses(text))


@dataclass(frozen=True)
class NoticeChoice:
    """What to send: the body, the notice appended to it (None: none) and why."""

    body: str
    notice: str | None
    reason: NoticeReason


def choose(
    body: str,
    notice: str,
    *,
    last_notice_at: datetime | None,
    at: datetime,
    required: bool = True,
) -> NoticeChoice:
    """Append `notice` to `body` unless one went out within 30 days or the body says it.

    `last_notice_at` is when the lead last received a text carrying an opt-out instruction
    from this account (None: never). `required=False` (a STOP/HELP confirmation, which has its
    own wording) only records whether the body carries an instruction.
    """
    if has_opt_out_instruction(body):
        # It counts as a notice sent: the next 30 days need none.
        return NoticeChoice(body, None, "in_text")
    if not required:
        return NoticeChoice(body, None, "not_required")
    if last_notice_at is not None and at - last_notice_at < NOTICE_INTERVAL:
        return NoticeChoice(body, None, "recent")
    return NoticeChoice(body + notice, notice, "appended")
