"""Reply matching: which choice of an `ask` a lead's reply selects.

Rules, in order of how a reply is read:
- Normalization: case-folded, accents stripped ("Sí" = "si"), apostrophes dropped ("don't" =
  "dont"), punctuation and whitespace separate words, each emoji is a word of its own with skin
  tones and variation selectors removed ("👍🏽" = "👍"), letters held for emphasis fold
  ("yesss", "noooo" = "yes", "no"; a run of three or more identical letters is needed).
- Keywords match whole words (or whole word sequences for "not now"), anywhere in the reply:
  "Yes please" matches `yes`; "yesterday" does not.
- Patterns are RE2 regexes (linear-time, see patterns.py) searched case-insensitively in the
  reply as written (NFKC-normalized, trimmed).
- A capture choice also needs its parser to read a value; a capture choice without keywords
  or patterns matches any reply its parser can read.
- Priority is deterministic: the first declared choice that matches wins, so put narrower
  choices ("not interested") before broader ones ("interested").

Opt-out words (STOP, UNSUBSCRIBE, "stop texting me") never reach this module: the compliance
layer (`compliance.keywords.classify`) handles them before the playbook sees a reply.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.playbooks import patterns
from gateway.playbooks.capture import CaptureValue, parse_capture

if TYPE_CHECKING:
    from gateway.playbooks.steps import AskStep, Choice

APOSTROPHES = frozenset("'’‘`´ʼ′")
# Invisible parts of emoji: skin tones, variation selectors, joiners, keycap combiner.
_EMOJI_NOISE = frozenset(
    [chr(cp) for cp in range(0x1F3FB, 0x1F400)] + ["\ufe0e", "\ufe0f", "\u200d", "\u20e3"]
)
_RUN = re.compile(r"(.)\1+")
_LONG_RUN = re.compile(r"(.)\1{2,}")
MAX_REPLY = 2000  # longer than any SMS; bounds the regex work a reply can cause


def _fold(text: str) -> str:
    # NFKD turns styled and fullwidth letters into plain ones and splits accents off to drop.
    decomposed = unicodedata.normalize("NFKD", text).casefold()
    decomposed = unicodedata.normalize("NFKD", decomposed)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def tokens(text: str) -> tuple[str, ...]:
    """The normalized words of a text: `"YES!!! 👍🏽"` -> `("yes", "👍")`."""
    words: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            words.append("".join(current))
            current.clear()

    for ch in _fold(text[:MAX_REPLY]):
        if ch in APOSTROPHES or ch in _EMOJI_NOISE:
            continue
        if ch.isalnum():
            current.append(ch)
        elif unicodedata.category(ch) == "So":
            flush()
            words.append(ch)
        else:
            flush()
    flush()
    return tuple(words)


@functools.lru_cache(maxsize=4096)
def keyword_tokens(keyword: str) -> tuple[str, ...]:
    """A keyword normalized like a reply; empty when it has nothing matchable."""
    return tokens(keyword)


def _squeeze(word: str) -> str:
    return _RUN.sub(r"\1", word)


def _same_word(word: str, keyword: str) -> bool:
    if word == keyword:
        return True
    # Only a run of 3+ counts as emphasis: "yesss" is "yes", but "good" is not "god".
    return bool(_LONG_RUN.search(word)) and _squeeze(word) == _squeeze(keyword)


def _contains(words: Sequence[str], phrase: Sequence[str]) -> bool:
    size = len(phrase)
    return any(
        all(_same_word(words[start + k], phrase[k]) for k in range(size))
        for start in range(len(words) - size + 1)
    )


def _pattern_text(text: str) -> str:
    return unicodedata.normalize("NFKC", text[:MAX_REPLY]).strip()


@dataclass(frozen=True)
class ReplyMatch:
    """The choice a reply selected, its position in `choices`, and the captured value."""

    choice: Choice
    index: int
    captured: CaptureValue | None = None


def _matches(choice: Choice, words: tuple[str, ...], raw: str) -> bool:
    if any(_contains(words, keyword_tokens(k)) for k in choice.keywords):
        return True
    return any(patterns.search(p, raw) for p in choice.patterns)


def read_reply(ask: AskStep, text: str) -> ReplyMatch | None:
    """The first choice of `ask` that `text` selects, with any captured value; None = catch-all."""
    words = tokens(text)
    raw = _pattern_text(text)
    for index, choice in enumerate(ask.choices):
        matchers = bool(choice.keywords or choice.patterns)
        if matchers and not _matches(choice, words, raw):
            continue
        if choice.capture is None:
            if matchers:
                return ReplyMatch(choice, index)
            continue
        value = parse_capture(choice.capture_parser, text[:MAX_REPLY])
        if value is not None:
            return ReplyMatch(choice, index, value)
    return None


def match_reply(ask: AskStep, text: str) -> Choice | None:
    """The first declared choice of `ask` matching `text`, or None (the catch-all applies)."""
    found = read_reply(ask, text)
    return None if found is None else found.choice
