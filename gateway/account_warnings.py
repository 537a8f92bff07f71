"""Publish-time warnings about the account, not the document: what a compliance officer would
ask before the first lead is contacted (a HELP answer with a real contact, a postal address in
every email). Warnings, not errors: the gateway still answers HELP and adds the unsubscribe
link without them; they say what is missing from what leads are shown."""

from __future__ import annotations

from gateway.account_settings import compliance_settings
from gateway.email.outbox import is_email_step
from gateway.models import Account
from gateway.playbooks import Playbook
from gateway.playbooks.report import Issue, warning


def account_warnings(playbook: Playbook | None, account: Account) -> list[Issue]:
    """`help_contact_unset` until the account says how leads reach it; `postal_address_unset`
    for a playbook that emails while the account has no postal address (CAN-SPAM)."""
    if playbook is None:
        return []
    settings = compliance_settings(account)
    issues: list[Issue] = []
    if not settings.help_contact:
        issues.append(
            warning(
                "account.compliance.help_contact",
                "help_contact is unset: a lead who texts HELP is told the business's name with "
                "the number they texted (and postal address, if set); set a phone, email or "
                "web address with PATCH /v1/account",
                "help_contact_unset",
            )
        )
    emailing = [i for i, step in enumerate(playbook.steps) if is_email_step(step)]
    if emailing and not settings.postal_address:
        issues.append(
            warning(
                f"steps[{emailing[0]}]",
                "the account has no postal_address: CAN-SPAM requires one in every commercial "
                "email; set it with PATCH /v1/account (emails still carry the unsubscribe link)",
                "postal_address_unset",
            )
        )
    return issues
