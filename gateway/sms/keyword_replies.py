"""STOP, START and HELP, handled the moment the text arrives: ledger first, then one reply.

One confirmation per opt-out: a repeated STOP from a number already opted out is logged in the
ledger but not answered again, and nothing is answered when Twilio already did: its Advanced
Opt-Out (the webhook carries `OptOutType`) or its default handling of the standard keywords.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from compliance.keywords import classify
from gateway import optouts
from gateway.account_settings import compliance_settings, render
from gateway.contact_lock import lock_contact
from gateway.models import Account, Channel, LedgerEvent, LedgerSource, Message, Purpose
from gateway.sms.outbox import queue_message

# What Twilio matches and answers on its own: the whole body, trimmed, any case.
TWILIO_DEFAULT_KEYWORDS: dict[str, str] = {
    **dict.fromkeys(
        ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"), "STOP"
    ),
    **dict.fromkeys(("START", "YES", "UNSTOP"), "START"),
    **dict.fromkeys(("HELP", "INFO"), "HELP"),
}


@dataclass(frozen=True)
class KeywordResult:
    kind: str | None  # "opt_out", "opt_in", "help" or None (an ordinary reply)
    reply: Message | None  # the confirmation or help text queued, if any


async def handle(
    session: AsyncSession,
    account: Account,
    *,
    phone: str,
    text: str,
    message_sid: str,
    inbound_number: str,
    lead_id: str | None,
    opt_out_type: str | None,
) -> KeywordResult:
    """Classify an inbound text and act on STOP/START/HELP; None kind for anything else."""
    await lock_contact(session, account.id, phone)
    opted_out = await optouts.is_opted_out(session, account.id, phone)
    found = classify(text, opted_out=opted_out)
    settings = compliance_settings(account)
    twilio_kind = (opt_out_type or "").strip().upper()
    if not twilio_kind and settings.twilio_answers_default_keywords:
        twilio_kind = TWILIO_DEFAULT_KEYWORDS.get(text.strip().upper(), "")
        if twilio_kind == "START" and not opted_out and found.kind != "opt_in":
            twilio_kind = ""  # "yes" from a subscribed lead is an answer, not a keyword
    kind = {"STOP": "opt_out", "START": "opt_in", "HELP": "help"}.get(twilio_kind, found.kind)
    if kind is None:
        return KeywordResult(None, None)

    if kind in ("opt_out", "opt_in"):
        if kind == "opt_in" and not opted_out:
            return KeywordResult(kind, None)  # already subscribed: nothing changes
        if opt_out_type:
            source = LedgerSource.TWILIO_OPT_OUT_TYPE
        else:
            source = LedgerSource.PHRASE if found.rule == "phrase" else LedgerSource.KEYWORD
        event = await optouts.record(
            session,
            account_id=account.id,
            phone=phone,
            event=LedgerEvent.OPT_OUT if kind == "opt_out" else LedgerEvent.OPT_IN,
            channel=Channel.SMS,
            source=source,
            text=text,
            rule=found.rule,
            keyword=found.keyword or (twilio_kind.lower() or None),
            message_sid=message_sid,
            inbound_number=inbound_number,
        )
        if twilio_kind or (kind == "opt_out" and opted_out):
            return KeywordResult(kind, None)
        template = (
            settings.opt_out_confirmation if kind == "opt_out" else settings.opt_in_confirmation
        )
        if kind == "opt_out" and found.language == "es":  # "parar", "baja", "no más"
            template = settings.opt_out_confirmation_es
        reason, ledger_event_id = f"{kind}_confirmation", event.id
    else:
        if twilio_kind:
            return KeywordResult(kind, None)
        template, reason, ledger_event_id = settings.help_text, "help_reply", None

    reply = await queue_message(
        session,
        account_id=account.id,
        phone=phone,
        body=render(template, account, settings, number=inbound_number),
        purpose=Purpose.CONFIRMATION,
        reason=reason,
        lead_id=lead_id,
        ledger_event_id=ledger_event_id,
    )
    return KeywordResult(kind, reply)
