"""Inbound message classification: keywords, revocation phrases, normalization."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance import keywords
from compliance.keywords import Classification, classify, clauses, correct, normalize
from compliance.phrases import (
    HELP_KEYWORDS,
    OPT_IN_KEYWORDS,
    OPT_IN_WHEN_OPTED_OUT,
    OPT_OUT_KEYWORDS,
)

REPLIES = Path(__file__).with_name("replies.tsv")
# The shapes of STOP (spaced, digits, emoji, misspelled, Spanish) and their look-alikes, with
# sources in its header; a 4th column gives the confirmation's language.
CORPUS = Path(__file__).with_name("opt_out_corpus.tsv")


def _rows(path: Path) -> list[tuple[str, bool, str, str | None]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        label, opted_out, text, language = [*line.split("\t", 3), "", ""][:4]
        rows.append((label, opted_out == "1", text, language or None))
    return rows


def _replies() -> list[tuple[str, bool, str]]:
    return [(label, opted_out, text) for label, opted_out, text, _ in _rows(REPLIES)]


ROWS = _replies()
CORPUS_ROWS = _rows(CORPUS)


def test_reply_table_is_large_and_covers_every_label() -> None:
    labels = [label for label, _, _ in ROWS]
    assert len(ROWS) >= 150
    assert {"opt_out", "opt_in", "help", "none"} <= set(labels)
    assert labels.count("none") >= 50  # tricky non-opt-outs are half the point


@pytest.mark.parametrize(("label", "opted_out", "text"), ROWS, ids=[r[2][:40] for r in ROWS])
def test_labeled_reply(label: str, opted_out: bool, text: str) -> None:
    result = classify(text, opted_out=opted_out)
    assert (result.kind or "none") == label, result


def test_corpus_is_large_and_sourced() -> None:
    header = [line for line in CORPUS.read_text(encoding="utf-8").splitlines() if line[:1] == "#"]
    assert any("CTIA" in line for line in header) and any("Spoke" in line for line in header)
    labels = [row[0] for row in CORPUS_ROWS]
    assert labels.count("opt_out") >= 80 and labels.count("none") >= 40
    assert sum(1 for row in CORPUS_ROWS if row[3] == "es") >= 30


@pytest.mark.parametrize(
    ("label", "opted_out", "text", "language"), CORPUS_ROWS, ids=[r[2][:40] for r in CORPUS_ROWS]
)
def test_corpus_reply(label: str, opted_out: bool, text: str, language: str | None) -> None:
    result = classify(text, opted_out=opted_out)
    assert (result.kind or "none") == label, result
    if language is not None:
        assert result.language == language, result


@pytest.mark.parametrize(
    "row", [r for r in ROWS + [c[:3] for c in CORPUS_ROWS] if r[0] != "opt_out"]
)
def test_no_reply_that_is_not_an_opt_out_becomes_one_with_a_stop_sign_beside_other_words(
    row: tuple[str, bool, str],
) -> None:
    """The stop sign counts only alone (or with politeness: "🛑 thanks"): beside other words it
    is decoration ("START 🛑", "stop by tomorrow 🛑")."""
    label, opted_out, text = row
    if not keywords._strip_fillers(tuple(normalize(text).split())):
        return  # "👍", "ok", "Thanks!": with a stop sign that is a stop sign alone
    assert (classify(text + " 🛑", opted_out=opted_out).kind or "none") == label


def test_phrases_are_tried_only_where_their_first_word_is() -> None:
    """Issue 14: every phrase was tried at every token. Now a clause only meets the phrases
    that can start with one of its words, and a long ordinary reply meets almost none."""
    ordinary = tuple(normalize("what is the rate on a thirty year fixed for a condo " * 20).split())
    assert len(keywords._candidates(ordinary)) <= 3
    assert len(keywords._phrases()) > 40
    clause = tuple(normalize("please stop texting me").split())
    tried = keywords._candidates(clause)
    assert 0 < len(tried) < len(keywords._phrases()) // 2
    # and the index loses nothing: every phrase that matches is among the candidates
    for _label, _opted_out, text, _ in CORPUS_ROWS + [(*r, None) for r in ROWS]:
        for part in clauses(text):
            for i, phrase in enumerate(keywords._phrases()):
                if keywords._find(phrase, part):
                    assert i in keywords._candidates(part), (text, phrase.text)


# ---- exact outputs ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("STOP", Classification("opt_out", "stop", "keyword")),
        ("STOPALL", Classification("opt_out", "stop all", "keyword")),
        ("Stop All!", Classification("opt_out", "stop all", "keyword")),
        ("OPT-OUT", Classification("opt_out", "opt out", "keyword")),
        ("optout", Classification("opt_out", "opt out", "keyword")),
        ("unsubscibe", Classification("opt_out", "unsubscribe", "keyword")),
        ("START", Classification("opt_in", "start", "keyword")),
        ("unstop", Classification("opt_in", "unstop", "keyword")),
        ("Help?", Classification("help", "help", "keyword")),
        ("INFO", Classification("help", "info", "keyword")),
        ("please stop texting me", Classification("opt_out", "stop texting me", "phrase")),
        ("pls dont txt me", Classification("opt_out", "dont text me", "phrase")),
        ("Stop. Who is this?", Classification("opt_out", "stop", "phrase")),
        ("No más mensajes", Classification("opt_out", "no mas mensajes", "phrase", "es")),
        ("Número equivocado", Classification("opt_out", "numero equivocado", "phrase", "es")),
        ("parar", Classification("opt_out", "parar", "keyword", "es")),
        ("S T O P", Classification("opt_out", "stop", "keyword")),
        ("ST0P", Classification("opt_out", "stop", "keyword")),
        ("\U0001f6d1", Classification("opt_out", "stop", "keyword")),
        ("YES", Classification()),
        ("I can't stop by today", Classification()),
    ],
)
def test_exact_classification(text: str, expected: Classification) -> None:
    assert classify(text) == expected


def test_yes_is_opt_in_only_for_an_opted_out_lead() -> None:
    assert classify("Yes", opted_out=True) == Classification("opt_in", "yes", "keyword")
    assert classify("Yes", opted_out=False).kind is None


def test_stop_wins_even_when_already_opted_out() -> None:
    assert classify("STOP", opted_out=True).kind == "opt_out"


def test_normalization_details() -> None:
    assert normalize("  Don’t   TXT me!!! 😡 ") == "dont text me"
    assert normalize("ＳＴＯＰ") == "stop"  # fullwidth letters
    assert normalize("No MÁS") == "no mas"
    assert normalize("opt-out") == "opt out"
    assert clauses("Stop. Who is this?") == [("stop",), ("who", "is", "this")]
    assert correct("stooooop") == "stop"
    assert correct("pleeeease") == "please"
    assert correct("unsubscrib") == "unsubscribe"  # one edit away
    assert correct("contract") == "contract"  # a real word, not a typo of "contact"


# ---- properties ----------------------------------------------------------------

DECORATION = st.text(
    alphabet=st.sampled_from(list(" \t\n.!?,;:-_*#()[]\"'~…¡¿🛑🙏😡👍❤️✋")), max_size=6
)
ALL_KEYWORDS = (
    [(k, "opt_out", False) for k in OPT_OUT_KEYWORDS]
    + [(k, "opt_in", False) for k in OPT_IN_KEYWORDS]
    + [(k, "opt_in", True) for k in OPT_IN_WHEN_OPTED_OUT]
    + [(k, "help", False) for k in HELP_KEYWORDS]
)


@settings(max_examples=300, deadline=None)
@given(
    case=st.sampled_from(ALL_KEYWORDS),
    before=DECORATION,
    after=DECORATION,
    upper=st.lists(st.booleans(), min_size=12, max_size=12),
    spaces=st.sampled_from([" ", "  ", "\t", " \u00a0 "]),
)
def test_keywords_survive_case_punctuation_emoji_and_whitespace(
    case: tuple[str, str, bool], before: str, after: str, upper: list[bool], spaces: str
) -> None:
    keyword, kind, opted_out = case
    cased = "".join(ch.upper() if up else ch for ch, up in zip(keyword, upper * 2, strict=False))
    text = before + cased.replace(" ", spaces) + after
    result = classify(text, opted_out=opted_out)
    assert result.kind == kind
    assert result.keyword == keyword


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.booleans())
def test_classify_never_raises(text: str, opted_out: bool) -> None:
    result = classify(text, opted_out=opted_out)
    assert result.kind in (None, "opt_out", "opt_in", "help")
    assert (result.kind is None) == (result.keyword is None) == (result.rule is None)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80))
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([r for r in ROWS if r[0] == "opt_out"]), DECORATION)
def test_opt_outs_survive_trailing_decoration(row: tuple[str, bool, str], tail: str) -> None:
    _, opted_out, text = row
    assert classify(text + tail, opted_out=opted_out).kind == "opt_out"


def test_the_typo_cache_stays_bounded_whatever_words_leads_send() -> None:
    # Every token of every inbound text passes through `correct`; new words past the bound
    # push the oldest out instead of growing the process.
    for n in range(keywords.TOKENS_REMEMBERED + 500):
        correct(f"zq{n:x}word")
    assert correct.cache_info().currsize == keywords.TOKENS_REMEMBERED
    assert correct("stpo") == "stop"  # still corrects, cached or not
