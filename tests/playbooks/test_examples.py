"""The shipped examples validate cleanly and behave like the conversations they describe."""

from pathlib import Path

import pytest

from gateway.playbooks import (
    AskStep,
    GotoStep,
    Playbook,
    TemplateContext,
    parse_playbook,
    render,
    validate_document,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NAMES = ["mortgage-qualification", "insurance-quote-drip", "insurance-xdate"]


def load(name: str) -> Playbook:
    return parse_playbook((EXAMPLES / f"{name}.yaml").read_text())


@pytest.mark.parametrize("name", NAMES)
def test_example_validates_without_errors_or_warnings(name: str) -> None:
    report = validate_document((EXAMPLES / f"{name}.yaml").read_text())
    assert report.errors == []
    assert report.warnings == []


@pytest.mark.parametrize("name", NAMES)
def test_first_text_names_the_business(name: str) -> None:
    playbook = load(name)
    for step in playbook.first_send_steps():
        assert step.text is not None and "{settings.partner_name}" in step.text


def test_readme_example_validates() -> None:
    readme = (EXAMPLES.parent / "gateway" / "playbooks" / "README.md").read_text()
    block = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    report = validate_document(block)
    assert report.errors == [] and report.warnings == []


def test_mortgage_conversation() -> None:
    playbook = load("mortgage-qualification")
    assert set(playbook.activities.outcomes) == {
        "qualified",
        "unqualified",
        "callback_requested",
        "textback_requested",
    }
    path = []
    step = "interested"
    for reply in ["Yes!", "about $400k", "good"]:
        action = playbook.read_reply(step, reply)
        assert action is not None, (step, reply)
        path.append((step, action.captured))
        assert action.next_step is not None
        step = action.next_step
    assert path == [("interested", None), ("loan_amount", 400_000), ("credit", "good")]
    assert step == "connect"
    call = playbook.read_reply("connect", "call me")
    assert call is not None and call.next_step == "call"
    after_call = playbook.next_step("call")
    assert after_call is not None and after_call.kind == "outcome"
    for reply, outcome in [
        ("TEXT me", "textback_requested"),
        ("tomorrow morning", "callback_requested"),
        ("call me at 5pm", "callback_requested"),
    ]:
        action = playbook.read_reply("connect", reply)
        assert action is not None and action.outcome == outcome, reply
    bad_credit = playbook.read_reply("credit", "not great")
    assert bad_credit is not None and bad_credit.outcome == "unqualified"
    assert playbook.read_reply("interested", "not interested, thanks") is not None
    assert playbook.required_settings() == ["partner_name"]


def test_mortgage_first_text_renders() -> None:
    playbook = load("mortgage-qualification")
    context = TemplateContext(
        lead={"phone": "+15555550100"},
        settings=playbook.effective_settings({"partner_name": "Acme Home Loans"}),
    )
    first = playbook.start()
    assert isinstance(first, AskStep)
    text = render(first.text, context)
    assert text.startswith("Hi there, it's Sam with Acme Home Loans.")
    assert len(text) <= 160


def test_insurance_drip_timing_and_transition() -> None:
    playbook = load("insurance-quote-drip")
    kinds = [
        (s.kind, getattr(s, "channel", None), str(getattr(s, "delay", ""))) for s in playbook.steps
    ]
    assert kinds == [
        ("send", "sms", "0:00:00"),
        ("send", "email", "1:00:00"),
        ("send", "sms", "1 day, 0:00:00"),
        ("goto", None, "2 days, 0:00:00"),
    ]
    last = playbook.steps[-1]
    assert isinstance(last, GotoStep) and last.playbook == "insurance-xdate"
    assert playbook.transitions() == ["insurance-xdate"]
    assert playbook.halt_drip_on_reply and playbook.on_failure == "skip"
    assert (EXAMPLES / f"{last.playbook}.yaml").exists()


def test_xdate_captures_the_renewal_month() -> None:
    playbook = load("insurance-xdate")
    action = playbook.read_reply("renewal_date", "It renews in March")
    assert action is not None and action.captured == "It renews in March"
    assert action.next_step == "check_in"
    maybe = playbook.read_reply("renewal_date", "I may be moving")
    assert maybe is None
    done = playbook.read_reply("renewal_date", "No thanks, already bought")
    assert done is not None and done.outcome == "unqualified"
