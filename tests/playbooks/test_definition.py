"""The API the engine walks plays with, and the facts it asks a playbook."""

from datetime import timedelta

import pytest

from gateway.playbooks import (
    BUILTIN_EVENTS,
    DEFAULT_CATCH_ALL,
    AskStep,
    Playbook,
    SendStep,
    validate_playbook,
)
from tests.playbooks.support import ask, doc, outcome, send


def build(*steps: dict[str, object], **fields: object) -> Playbook:
    report = validate_playbook(doc(*steps, **fields))
    assert report.playbook is not None, report.errors
    return report.playbook


FLOW = build(
    {"id": "e", "kind": "send", "channel": "email", "subject": "Hi", "body": "b", "from": "a@b.co"},
    {"id": "w", "kind": "wait", "duration": "1h"},
    ask(
        "q",
        {"keywords": ["yes"], "event": "interested"},
        {"keywords": ["later"], "capture": "when", "goto": "call"},
        {"keywords": ["no"], "capture": "why", "outcome": "unqualified", "reply": "Bye"},
        {"keywords": ["bye"], "goto": "end"},
        next="thanks",
        catch_all={"level2": "Still there?"},
    ),
    send("skipped", next="end"),
    {"id": "call", "kind": "call", "whisper": "Lead {lead.phone}"},
    send("thanks", "Thanks from {settings.partner_name}", delay="5m"),
    {"id": "x", "kind": "goto", "playbook": "insurance-xdate", "settings": {"topic": "renewal"}},
    catch_all={"level1": "Sorry?"},
)


def test_walk_steps() -> None:
    assert FLOW.start().id == "e"
    assert FLOW.step("thanks").delay == timedelta(minutes=5)  # type: ignore[union-attr]
    assert FLOW.index("call") == 4
    assert FLOW.has_step("q") and not FLOW.has_step("nope")
    with pytest.raises(KeyError):
        FLOW.step("nope")
    nxt = FLOW.next_step
    assert [
        getattr(nxt(s), "id", None) for s in ("e", "w", "q", "skipped", "call", "thanks", "x")
    ] == [
        "w",
        "q",
        "thanks",  # the ask's `next`: where choices without goto continue
        None,  # next: end
        "thanks",  # falls through
        "x",
        None,  # goto ends this play
    ]


def test_choice_actions() -> None:
    yes = FLOW.read_reply("q", "Yes!")
    assert yes is not None
    assert (yes.index, yes.event, yes.outcome, yes.next_step) == (0, "interested", None, "thanks")

    later = FLOW.read_reply("q", "later tonight")
    assert later is not None
    assert (later.capture, later.captured, later.next_step) == ("when", "later tonight", "call")

    no = FLOW.read_reply("q", "no")
    assert no is not None
    assert (no.outcome, no.next_step, no.reply, no.capture, no.captured) == (
        "unqualified",
        None,
        "Bye",
        "why",
        "no",
    )

    bye = FLOW.read_reply("q", "bye")
    assert bye is not None and bye.next_step is None and bye.outcome is None

    assert FLOW.read_reply("q", "what?") is None
    with pytest.raises(TypeError):
        FLOW.read_reply("e", "yes")


def test_choice_action_from_a_choice() -> None:
    step = FLOW.step("q")
    assert isinstance(step, AskStep)
    action = FLOW.choice_action("q", step.choices[1], "tomorrow")
    assert (action.index, action.captured, action.next_step) == (1, "tomorrow", "call")
    assert FLOW.choice_action("q", 1, "tomorrow") == action
    copy = step.choices[1].model_copy()
    assert FLOW.choice_action("q", copy, "tomorrow").index == 1
    with pytest.raises(ValueError):
        FLOW.choice_action("q", step.choices[1].model_copy(update={"event": "x"}))


def test_catch_all_merges_ask_playbook_and_defaults() -> None:
    merged = FLOW.catch_all_for("q")
    assert merged.message(1) == "Sorry?"
    assert merged.message(2) == "Still there?"
    assert merged.message(3) == DEFAULT_CATCH_ALL.level3


def test_activity_labels() -> None:
    labels = FLOW.activity_labels()
    assert all(labels[e] == "event" for e in BUILTIN_EVENTS)
    assert labels["qualified"] == labels["unqualified"] == "outcome"
    assert labels["opted_out"] == labels["party_line_completed"] == "outcome"
    assert list(labels)[: len(BUILTIN_EVENTS)] == list(BUILTIN_EVENTS)


def test_first_send_steps() -> None:
    # email and wait come first; the ask is the first SMS
    assert [s.id for s in FLOW.first_send_steps()] == ["q"]
    branching = build(
        ask("q", {"keywords": ["x"]}),
        send("a"),
    )
    assert [s.id for s in branching.first_send_steps()] == ["q"]
    via_call = build({"id": "c", "kind": "call", "next": "b"}, send("a"), send("b"))
    assert [s.id for s in via_call.first_send_steps()] == ["b"]
    assert all(isinstance(s, SendStep | AskStep) for s in via_call.first_send_steps())
    no_sms = build(outcome("done"))
    assert no_sms.first_send_steps() == []


def test_transitions_and_settings() -> None:
    assert FLOW.transitions() == ["insurance-xdate"]
    playbook = build(settings={"partner_name": None, "agent_name": "Sam"})
    assert playbook.required_settings() == ["partner_name"]
    assert playbook.effective_settings({"partner_name": "Acme", "extra": 1}) == {
        "partner_name": "Acme",
        "agent_name": "Sam",
        "extra": 1,
    }
    with pytest.raises(ValueError, match="partner_name"):
        playbook.effective_settings({"agent_name": "Kim"})


def test_defaults() -> None:
    assert FLOW.halt_drip_on_reply is True
    assert FLOW.on_failure == "halt"
    assert FLOW.email_after_opt_out is False
    assert FLOW.reengagement is None
    step = FLOW.step("thanks")
    assert isinstance(step, SendStep) and step.channel == "sms"


def test_models_are_immutable() -> None:
    with pytest.raises(ValueError):
        FLOW.name = "changed"  # type: ignore[misc]


def test_json_schema_is_available() -> None:
    schema = Playbook.model_json_schema(by_alias=True)
    assert "steps" in schema["properties"]
    assert schema["$defs"]["SendStep"]["properties"]["delay"]["type"] == "string"
