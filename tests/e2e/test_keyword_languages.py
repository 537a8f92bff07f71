"""STOP in Spanish gets the Spanish confirmation (both texts the account's to set), and HELP
names a way to reach the business before `help_contact` is set; through the sandbox."""

from __future__ import annotations

from gateway.account_settings import DEFAULT_OPT_OUT_CONFIRMATION_ES
from tests.support.stack import LEAD, OUR_NUMBER, Stack

OTHER = "+14155550177"
YAML = {"Content-Type": "application/yaml"}


async def _reply_to(stack: Stack, phone: str, text: str) -> str:
    stack.sandbox.send_sms(phone, OUR_NUMBER, text)
    await stack.sandbox.settle()
    await stack.work()
    [reply] = stack.creates(To=phone)
    return str(reply.get("Body") or "")


async def test_parar_is_an_opt_out_answered_in_spanish(stack: Stack) -> None:
    body = await _reply_to(stack, LEAD, "parar")
    assert body == DEFAULT_OPT_OUT_CONFIRMATION_ES.replace("{business}", "Acme Lending")
    status = await stack.api.get(f"/v1/opt-outs/{LEAD}")
    assert status.json()["status"] == "opted_out"


async def test_the_account_sets_both_confirmations(stack: Stack) -> None:
    patched = await stack.api.patch(
        "/v1/account",
        json={
            "compliance": {
                "opt_out_confirmation": "{business}: done, no more texts. Reply START to rejoin.",
                "opt_out_confirmation_es": "{business}: listo, sin más mensajes. START: volver.",
            }
        },
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["compliance"]["opt_out_confirmation_es"].startswith("{business}: listo")
    assert await _reply_to(stack, LEAD, "No más, por favor") == (
        "Acme Lending: listo, sin más mensajes. START: volver."
    )
    assert await _reply_to(stack, OTHER, "please stop texting me") == (
        "Acme Lending: done, no more texts. Reply START to rejoin."
    )


async def test_help_names_a_contact_before_help_contact_is_set(stack: Stack) -> None:
    await stack.api.patch(
        "/v1/account",
        json={
            "compliance": {
                "twilio_answers_default_keywords": False,
                "postal_address": "1 Market St, San Francisco, CA",
            }
        },
    )
    body = await _reply_to(stack, LEAD, "HELP")
    assert "for help contact Acme Lending (" in body
    assert OUR_NUMBER in body and "1 Market St, San Francisco, CA" in body


async def test_publishing_warns_until_help_contact_is_set(stack: Stack) -> None:
    playbook = "name: Hi\nsteps:\n  - id: hi\n    kind: send\n    text: Hi there\n"
    first = await stack.api.put("/v1/playbooks/hi", content=playbook, headers=YAML)
    assert first.status_code == 201, first.text
    assert "help_contact_unset" in {w["code"] for w in first.json()["account_warnings"]}
    await stack.api.patch("/v1/account", json={"compliance": {"help_contact": "415-555-0100"}})
    second = await stack.api.put("/v1/playbooks/hi", content=playbook, headers=YAML)
    assert "help_contact_unset" not in {w["code"] for w in second.json()["account_warnings"]}
