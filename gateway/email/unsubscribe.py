"""The unsubscribe link of a playbook email: its signed token, the footer and the headers.

CAN-SPAM (15 U.S.C. 7704(a)(3), (a)(5)) wants every commercial email to carry a working way
out and the sender's postal address; Gmail and Yahoo (2024) and RFC 8058 want one-click
unsubscribe headers. The link is `/unsubscribe/{token}`: the token names the email and carries
an HMAC of it under the account's own link secret, so it needs no API key, can't be guessed or
forged from another email's token, and never leads into another account.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.account_settings import compliance_settings
from gateway.models import Account, Email

PATH = "/unsubscribe"
SIGNATURE_BYTES = 16  # 128 bits: forging one is guessing a random number that large
ONE_CLICK = "List-Unsubscribe=One-Click"  # RFC 8058's POST body and header value
FOOTER_MARK = "\n\n-- \n"  # the signature separator: mail readers grey out what follows


def _signature(secret: str, email_id: str) -> str:
    digest = hmac.new(secret.encode(), f"unsubscribe:{email_id}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()[:SIGNATURE_BYTES]).rstrip(b"=").decode()


def token(secret: str, email_id: str) -> str:
    """`<email id>.<signature>`: what the link carries."""
    return f"{email_id}.{_signature(secret, email_id)}"


def email_id_of(value: str) -> str | None:
    """The email id a token claims (unverified), or None when it isn't shaped like a token."""
    email_id, dot, signature = value.partition(".")
    if not dot or not email_id.startswith("eml_") or len(email_id) > 40 or not signature:
        return None
    return email_id


def verify(secret: str | None, value: str) -> bool:
    """Whether `value` is the token of its email under `secret` (constant-time)."""
    email_id = email_id_of(value)
    if secret is None or email_id is None:
        return False
    return hmac.compare_digest(value.encode(), token(secret, email_id).encode())


async def link_secret(session: AsyncSession, account: Account) -> str:
    """The account's link secret, made on first use (the first writer wins a race)."""
    if account.link_secret:
        return account.link_secret
    await session.exec(
        update(Account)
        .where(col(Account.id) == account.id, col(Account.link_secret).is_(None))
        .values(link_secret=secrets.token_urlsafe(32))
    )
    await session.refresh(account, ["link_secret"])
    assert account.link_secret is not None
    return account.link_secret


def url(base_url: str, secret: str, email_id: str) -> str:
    return f"{base_url.rstrip('/')}{PATH}/{token(secret, email_id)}"


def footer(account: Account, link: str) -> str:
    """What every playbook email ends with: who sent it, where they are, and the way out."""
    settings = compliance_settings(account)
    business = settings.business_name or account.name
    lines = [business]
    if settings.postal_address:
        lines.append(settings.postal_address)
    lines.append(f"Unsubscribe from {business}'s emails: {link}")
    return FOOTER_MARK + "\n".join(lines) + "\n"


def rep_notice_footer(account: Account, link: str) -> str:
    """What a notice to a rep ends with: who sent it and the way out of these notices only.

    Staff mail is not commercial email: CAN-SPAM's opt-out and postal address are for messages
    whose primary purpose is advertising, and 15 U.S.C. 7702(17)(A)(iv) counts information
    "directly related to an employment relationship" as transactional. The link is kept all the
    same (RFC 8058 headers help delivery, and a rep who leaves shouldn't need an admin to stop
    the mail); it stops only these notices to this address (`Rep.notice_emails_stopped`), not
    the rep's texts nor any lead email."""
    business = compliance_settings(account).business_name or account.name
    return (
        FOOTER_MARK + f"{business}: notices of leads assigned to you.\nStop these emails: {link}\n"
    )


def headers(link: str) -> tuple[tuple[str, str], ...]:
    """RFC 2369 List-Unsubscribe and RFC 8058 one-click (the mailbox provider POSTs it)."""
    return (("List-Unsubscribe", f"<{link}>"), ("List-Unsubscribe-Post", ONE_CLICK))


async def prepare(
    session: AsyncSession,
    account: Account,
    email: Email,
    base_url: str,
    *,
    rep_notice: bool = False,
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The body with its footer (added once, kept on the row: a resend carries the same) and
    the headers, for an email to a lead (or, `rep_notice`, a notice to a rep)."""
    link = url(base_url, await link_secret(session, account), email.id)
    body = email.body
    if link not in body:
        ending = rep_notice_footer(account, link) if rep_notice else footer(account, link)
        body = body.rstrip("\n") + ending
    return body, headers(link)
