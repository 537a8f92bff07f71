from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.playbooks import TemplateContext, TemplateSyntaxError, Variable, parse_template, render

CONTEXT = TemplateContext(
    lead={
        "first_name": "Ana",
        "last_name": None,
        "phone": "+15555550100",
        "state": "TX",
        "additional_info": {"loan_amount": 350000, "vehicle": {"make": "Subaru"}, "blank": ""},
    },
    settings={"agent_name": "Sam", "partner_name": "Acme", "rate": 6.5, "vip": True},
    answers={"loan_amount": 250000.0, "credit": "good"},
)


def test_parse_variables() -> None:
    template = parse_template("Hi {lead.first_name|there}, {settings.agent_name} here {{ok}}")
    assert template.variables == (
        Variable("lead", ("first_name",), "there"),
        Variable("settings", ("agent_name",), None),
    )
    assert template.parts[-1] == " here {ok}"
    assert template.variables[0].name == "lead.first_name"
    assert template.variables[0].has_fallback


def test_empty_fallback_is_a_fallback() -> None:
    (var,) = parse_template("{lead.first_name|}").variables
    assert var.fallback == ""
    assert var.has_fallback


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("Hi {lead.first_name", "unclosed '{'"),
        ("Hi }", "unmatched '}'"),
        ("{}", "empty variable"),
        ("{ | x}", "empty variable"),
        ("{foo.bar}", "unknown variable"),
        ("{lead}", "needs a field"),
        ("{lead.first name}", "malformed"),
        ("{lead.{x}}", "'{' inside a variable"),
        ("{lead..x}", "malformed"),
    ],
)
def test_syntax_errors(source: str, message: str) -> None:
    with pytest.raises(TemplateSyntaxError, match=message):
        parse_template(source)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("Hi {lead.first_name}!", "Hi Ana!"),
        ("Hi {lead.last_name|friend}", "Hi friend"),
        ("Hi {lead.last_name}", "Hi "),
        ("Hi {lead.email|there}", "Hi there"),
        ("{lead.additional_info.loan_amount}", "350000"),
        ("{lead.additional_info.vehicle.make}", "Subaru"),
        ("{lead.additional_info.vehicle}", '{"make":"Subaru"}'),
        ("{lead.additional_info.blank|n/a}", "n/a"),
        ("{lead.additional_info.missing|n/a}", "n/a"),
        ("{lead.additional_info.loan_amount.deeper|x}", "x"),
        ("{answers.loan_amount}", "250000"),
        ("{settings.rate}%", "6.5%"),
        ("VIP: {settings.vip}", "VIP: yes"),
        ("{answers.nothing}", ""),
        ("{{literal}} {settings.agent_name}", "{literal} Sam"),
        ("Hola {lead.first_name} 👋 ñ", "Hola Ana 👋 ñ"),
        ("{ lead.first_name | there }", "Ana"),
    ],
)
def test_render(source: str, expected: str) -> None:
    assert render(source, CONTEXT) == expected


def test_render_accepts_a_parsed_template() -> None:
    assert render(parse_template("Hi {lead.first_name}"), CONTEXT) == "Hi Ana"


def test_render_sends_a_broken_template_as_written() -> None:
    assert render("Hi {lead.first_name", CONTEXT) == "Hi {lead.first_name"


def test_render_survives_hostile_values() -> None:
    class Hostile:
        def __str__(self) -> str:
            raise RuntimeError("boom")

    circular: dict[str, Any] = {}
    circular["self"] = circular
    context = TemplateContext(lead={"first_name": Hostile(), "additional_info": {"c": circular}})
    assert render("{lead.first_name|x} {lead.additional_info.c|y}", context) == "x y"


@given(st.text(max_size=80))
def test_render_never_raises(source: str) -> None:
    assert isinstance(render(source, CONTEXT), str)


@given(st.text(alphabet=st.characters(exclude_characters="{}"), max_size=40))
def test_text_without_braces_renders_unchanged(source: str) -> None:
    assert render(source, CONTEXT) == source
