"""Classify an inbound message: opt-out, opt-in, help, or an ordinary reply.

Two layers, both driven by the data in compliance/phrases.py:
1. whole-message keywords (STOP, START, HELP...), the carrier-standard words;
2. revocation phrases anywhere in the message ("please stop texting me",
   "no más mensajes"), because the FCC's 2024 order lets a consumer revoke
   consent "by any reasonable means", not only with the keyword.

Leads write STOP in many shapes, all folded before matching: spaced or dotted
out ("S T O P", "S.T.O.P"), digits for letters ("ST0P", "5TOP", "$TOP"),
misspelled ("stpo", "sotp"), or the stop sign emoji alone. Each fold applies only
when the result is a word of the keyword and phrase vocabulary, so ordinary
replies ("a b c", "2nd", "R2D2") stay as they are.

Cost: normalization is one pass over the text; each phrase is tried only in
clauses that hold one of its possible first words (an index built once), so a
long ordinary reply costs a few dictionary lookups per token, not a phrase match
per phrase per token.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from compliance.phrases import (
    FILLERS,
    HELP_KEYWORDS,
    KEEP_TEXTING_PHRASES,
    LEET,
    MACROS,
    NOT_TYPOS,
    OPT_IN_KEYWORDS,
    OPT_IN_WHEN_OPTED_OUT,
    OPT_OUT_KEYWORDS,
    REVOCATION_PHRASES,
    SPANISH_KEYWORDS,
    SPELLING,
    STOP_SIGNS,
    Phrase,
)

Kind = Literal["opt_out", "opt_in", "help"]
Language = Literal["en", "es"]
SPANISH_POLITENESS = frozenset({"por", "favor", "gracias"})
MatchRule = Literal["keyword", "phrase"]
Tokens = tuple[str, ...]

APOSTROPHES = "'’‘`´ʼ′"  # "don't" -> "dont", not "don t"
CLAUSE_BREAKS = ".!?;,:\n\r¡¿…|"  # where a clause ends; "stop, who is this" has two
GAP = 2  # tokens a "*" slot may skip
_SPLIT_CONTRACTION = re.compile(r"\b(don|can|won|didn|doesn|isn|shouldn|wouldn|couldn)\s+t\b")
_RUN3 = re.compile(r"(.)\1{2,}")
_RUN2 = re.compile(r"(.)\1+")
# Single characters separated by spaces, dots or dashes: "s t o p", "s.t.o.p", "s-t-o-p".
# Separators and characters are disjoint classes, so matching is linear.
_SPELLED_OUT = re.compile(r"(?<![^\W_])[^\W_](?:[ .\-_*·•]{1,3}[^\W_](?![^\W_])){2,}")
_SEPARATORS = re.compile(r"[ .\-_*·•]")
# "$" reads as "s" only before a letter ("$TOP"); "$5" stays a price.
_DOLLAR_S = re.compile(r"\$(?=[a-z])")


@dataclass(frozen=True)
class Classification:
    """What an inbound message asks for; all None for an ordinary reply."""

    kind: Kind | None = None
    keyword: str | None = None  # what matched, normalized ("stop", "stop texting me")
    rule: MatchRule | None = None
    # The language the lead opted out in: "es" gets the Spanish confirmation.
    language: Language = "en"


ORDINARY = Classification()


def _fold(text: str) -> str:
    """Lowercase, accents stripped, compatibility forms (fullwidth letters) unified."""
    # NFKD first turns styled letters ("𝘈", "Ｓ") into plain ones to casefold;
    # again after, because casefolding can compose ("İ" -> "i̇").
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _join_spelled(match: re.Match[str]) -> str:
    joined = _SEPARATORS.sub("", match.group(0))
    return joined if correct(joined) in _keyword_words() else match.group(0)


def _raw_clauses(text: str) -> list[list[str]]:
    folded = _fold(text)
    folded = "".join(ch for ch in folded if ch not in APOSTROPHES)
    folded = _SPLIT_CONTRACTION.sub(r"\1t", folded)
    folded = _DOLLAR_S.sub("s", folded)
    folded = _SPELLED_OUT.sub(_join_spelled, folded)
    chars = []
    for ch in folded:
        if ch.isalnum():
            chars.append(ch)
        elif ch in CLAUSE_BREAKS:
            chars.append("\n")
        else:
            chars.append(" ")  # punctuation, symbols, emoji, whitespace
    return [line.split() for line in "".join(chars).split("\n")]


@functools.cache
def _vocabulary() -> frozenset[str]:
    words: set[str] = set(FILLERS)
    for keyword in OPT_OUT_KEYWORDS + OPT_IN_KEYWORDS + OPT_IN_WHEN_OPTED_OUT + HELP_KEYWORDS:
        words.update(keyword.split())
    for phrase in REVOCATION_PHRASES:
        words.update(re.findall(r"[a-z]+", _expand(phrase.pattern)))
    for value in SPELLING.values():
        words.update(value.split())
    return frozenset(words)


@functools.cache
def _keyword_words() -> frozenset[str]:
    """Whole-message keywords (single words): what a spelled-out or digit-for-letter token
    may become ("s t o p", "ST0P"); a looser fold would turn ordinary text into keywords."""
    keywords = OPT_OUT_KEYWORDS + OPT_IN_KEYWORDS + HELP_KEYWORDS
    return frozenset(k for k in keywords if " " not in k) | {"optout"}


@functools.cache
def _typo_targets() -> tuple[str, ...]:
    # Only long words: short ones ("stop", "end") have too many real neighbours.
    return tuple(sorted(w for w in _vocabulary() if len(w) >= 7))


def _one_edit(a: str, b: str) -> bool:
    """True when a and b differ by one insertion, deletion, substitution or swap."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        i = diff[0]
        return len(diff) == 2 and diff[1] == i + 1 and a[i] == b[i + 1] and a[i + 1] == b[i]
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1 :]


# `correct` remembers this many tokens: they come from leads' texts, so an unbounded cache
# would grow with every new word anyone sends (a sender of random words grew it without end).
TOKENS_REMEMBERED = 65_536


@functools.lru_cache(maxsize=TOKENS_REMEMBERED)
def correct(token: str) -> str:
    """A token with its misspelling fixed (may become several words, e.g. 'optout')."""
    if token in SPELLING:
        return SPELLING[token]
    vocabulary = _vocabulary()
    if token in vocabulary or token.isdigit():
        return token
    if not token.isalpha() and any(ch.isalpha() for ch in token):  # "st0p", "5top", "0pt0ut"
        unleet = token.translate(LEET)
        if unleet != token and unleet.isalpha():
            fixed = correct(unleet)
            if fixed.replace(" ", "") in _keyword_words() or (
                len(token) >= 3 and fixed in vocabulary  # "0pt 0ut"
            ):
                return fixed
    if _RUN3.search(token):  # "stooop", "pleeease", "messsages"
        for squeezed in (_RUN3.sub(r"\1\1", token), _RUN2.sub(r"\1", token)):
            if squeezed in SPELLING:
                return SPELLING[squeezed]
            if squeezed in vocabulary:
                return squeezed
    if len(token) >= 6 and token not in NOT_TYPOS:
        for word in _typo_targets():
            if _one_edit(token, word):
                return word
    return token


def clauses(text: str) -> list[Tokens]:
    """Normalized tokens of each clause of a message (empty clauses dropped)."""
    out: list[Tokens] = []
    for raw in _raw_clauses(text):
        tokens: list[str] = []
        for token in raw:
            tokens.extend(correct(token).split())
        if tokens:
            out.append(tuple(tokens))
    return out


def normalize(text: str) -> str:
    """The message as matched: normalized tokens separated by single spaces."""
    return " ".join(" ".join(c) for c in clauses(text))


# ---- phrase matching -------------------------------------------------------


@dataclass(frozen=True)
class _Slot:
    alternatives: tuple[Tokens, ...]
    optional: bool = False
    gap: int = 0


@dataclass(frozen=True)
class _Compiled:
    text: str
    slots: tuple[_Slot, ...]
    at_start: bool
    at_end: bool
    not_before: frozenset[str]
    not_after: frozenset[str]
    language: Language = "en"


def _expand(pattern: str) -> str:
    return pattern.format(**MACROS)


def _compile(phrase: Phrase) -> _Compiled:
    pieces = re.findall(r"\[[^\]]*\]|\([^)]*\)|\S+", _expand(phrase.pattern))
    at_start = bool(pieces) and pieces[0] == "^"
    at_end = bool(pieces) and pieces[-1] == "$"
    slots: list[_Slot] = []
    for piece in pieces:
        if piece in "^$":
            continue
        if piece == "*":
            slots.append(_Slot((), gap=GAP))
            continue
        optional = piece.startswith("[")
        body = piece[1:-1] if piece[0] in "[(" else piece
        # A macro inside [...] brings its own (...): alternatives are flat anyway.
        body = body.replace("(", "").replace(")", "")
        alternatives = tuple(tuple(alt.split()) for alt in body.split("|") if alt.strip())
        slots.append(_Slot(alternatives, optional=optional))
    return _Compiled(
        text=phrase.pattern,
        slots=tuple(slots),
        at_start=at_start,
        at_end=at_end,
        not_before=frozenset(phrase.not_before.split()),
        not_after=frozenset(phrase.not_after.split()),
        language="es" if phrase.language == "es" else "en",
    )


@functools.cache
def _phrases() -> tuple[_Compiled, ...]:
    return tuple(_compile(p) for p in REVOCATION_PHRASES)


def _first_words(slots: Sequence[_Slot]) -> frozenset[str] | None:
    """Words a match of `slots` can start with; None when any word can (a leading gap)."""
    words: set[str] = set()
    for slot in slots:
        if slot.gap:
            return None
        words.update(alt[0] for alt in slot.alternatives if alt)
        if not slot.optional:
            return frozenset(words)
    return None  # every slot optional: could start anywhere


@functools.cache
def _phrase_index() -> tuple[dict[str, tuple[int, ...]], tuple[int, ...]]:
    """First word -> indexes of the phrases that can start with it, and the phrases that can
    start with any word. Built once; `classify` tries only the phrases a clause can start."""
    by_word: dict[str, list[int]] = {}
    anywhere: list[int] = []
    for i, phrase in enumerate(_phrases()):
        words = _first_words(phrase.slots)
        if words is None:
            anywhere.append(i)
            continue
        for word in words:
            by_word.setdefault(word, []).append(i)
    return {w: tuple(ids) for w, ids in by_word.items()}, tuple(anywhere)


@functools.cache
def _keep_phrases() -> tuple[_Compiled, ...]:
    return tuple(_compile(p) for p in KEEP_TEXTING_PHRASES)


def _keeps_texting(parts: Sequence[Tokens]) -> bool:
    """Whether the message says the texts should go on (see KEEP_TEXTING_PHRASES)."""
    return any(_find(phrase, clause) for clause in parts for phrase in _keep_phrases())


def _candidates(tokens: Tokens) -> list[int]:
    """Indexes of the phrases that may match in `tokens`, in the order they are listed."""
    by_word, anywhere = _phrase_index()
    found = set(anywhere)
    for token in set(tokens):
        found.update(by_word.get(token, ()))
    return sorted(found)


def _ends(slots: Sequence[_Slot], tokens: Tokens, pos: int) -> Iterator[int]:
    """Every end position where `slots` match `tokens` from `pos`."""
    if not slots:
        yield pos
        return
    slot, rest = slots[0], slots[1:]
    if slot.gap:
        for skip in range(min(slot.gap, len(tokens) - pos) + 1):
            yield from _ends(rest, tokens, pos + skip)
        return
    if slot.optional:
        yield from _ends(rest, tokens, pos)
    for alt in slot.alternatives:
        if tokens[pos : pos + len(alt)] == alt:
            yield from _ends(rest, tokens, pos + len(alt))


def _find(phrase: _Compiled, tokens: Tokens) -> Tokens | None:
    starts = range(1) if phrase.at_start else range(len(tokens))
    for start in starts:
        if start > 0 and tokens[start - 1] in phrase.not_after:
            continue
        ends = [
            end
            for end in _ends(phrase.slots, tokens, start)
            if end > start
            and (not phrase.at_end or end == len(tokens))
            and (end == len(tokens) or tokens[end] not in phrase.not_before)
        ]
        if ends:
            return tokens[start : max(ends)]  # report the longest reading
    return None


# ---- classification ----------------------------------------------------------


def _strip_fillers(tokens: Tokens) -> Tokens:
    return tuple(t for t in tokens if t not in FILLERS)


def _as_keyword(tokens: Tokens, keywords: Sequence[str]) -> str | None:
    """The keyword the tokens spell (possibly repeated: 'stop stop'), else None."""
    core = _strip_fillers(tokens)
    for keyword in keywords:
        words = tuple(keyword.split())
        if core and len(core) % len(words) == 0 and core == words * (len(core) // len(words)):
            return keyword
    return None


def _opt_out(keyword: str, rule: MatchRule, language: Language = "en") -> Classification:
    spanish = language == "es" or keyword in SPANISH_KEYWORDS
    return Classification("opt_out", keyword, rule, "es" if spanish else "en")


def classify(text: str, *, opted_out: bool = False) -> Classification:
    """Classify an inbound message (never raises; any text is accepted).

    `opted_out` tells whether the lead is currently opted out: only then is
    "YES" an opt-in; otherwise it is an ordinary answer.
    """
    parts = clauses(text)
    whole = tuple(token for clause in parts for token in clause)
    if any(sign in text for sign in STOP_SIGNS) and not _strip_fillers(whole):
        return _opt_out("stop", "keyword")  # "🛑", "🛑🛑", "🛑 please"
    if not whole:
        return ORDINARY
    keyword = _as_keyword(whole, OPT_OUT_KEYWORDS)
    if keyword:  # "STOP por favor" is a Spanish speaker's STOP
        return _opt_out(keyword, "keyword", "es" if SPANISH_POLITENESS & set(whole) else "en")
    opt_in = OPT_IN_KEYWORDS + (OPT_IN_WHEN_OPTED_OUT if opted_out else ())
    keyword = _as_keyword(whole, opt_in)
    if keyword:
        return Classification("opt_in", keyword, "keyword")
    keyword = _as_keyword(whole, HELP_KEYWORDS)
    if keyword:
        return Classification("help", keyword, "keyword")
    for clause in parts:
        keyword = _as_keyword(clause, OPT_OUT_KEYWORDS)
        if keyword:
            return _opt_out(keyword, "phrase")
    if _keeps_texting(parts):
        return ORDINARY
    phrases = _phrases()
    for clause in parts:
        for i in _candidates(clause):
            found = _find(phrases[i], clause)
            if found:
                return _opt_out(" ".join(found), "phrase", phrases[i].language)
    return ORDINARY
