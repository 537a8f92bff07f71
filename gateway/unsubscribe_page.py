"""`/unsubscribe/{token}`: the page an email's unsubscribe link opens, and RFC 8058 one-click.

GET shows one button and changes nothing (mail scanners and link previews fetch links); POST
records the email opt-out, from that button or from a mailbox provider's one-click request
(body `List-Unsubscribe=One-Click`). The token is the only authority (no API key, no CSRF
token: RFC 8058 one-click has none to give); a wrong or forged one gets the same small 404
page. Nothing from the request is echoed: the page shows only the account's business name,
escaped. The body is limited by `gateway.body_limit` and must arrive within READ_TIMEOUT.

Scope: the address gets no more email from the account, even after a START by text. And like
any opt-out in the ledger (whose `channel` says how the request came, not what it covers),
it ends texts and calls to the lead's phone too until the lead texts START: the FCC lets a
consumer revoke consent "by any reasonable means", and a wrong guess here costs a lawsuit
where the other costs a lead. The page says so.

A rep's notice email (gateway/engine/rep_notices.py) has the same link, but it is staff mail:
it stops only those notices to that address (`Rep.notice_emails_stopped`), not the ledger.
"""

from __future__ import annotations

import asyncio
import html
import logging

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from gateway import optouts
from gateway.account_settings import compliance_settings
from gateway.clock import now
from gateway.contact_lock import lock_contact
from gateway.db import transaction
from gateway.email import unsubscribe
from gateway.models import Account, Channel, Email, Lead, LedgerEvent, LedgerSource, Rep
from gateway.state import app_state

logger = logging.getLogger(__name__)

BODY_LIMIT = 4 * 1024  # the one-click body is 26 bytes; gateway.body_limit enforces this
READ_TIMEOUT = 10.0  # seconds to deliver that body; a trickle is cut off
SECURITY_HEADERS = {
    # No script, no outside resource, no framing; the form posts back here only. The token is
    # in the URL, so it must not leak in a Referer or sit in a shared cache.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
}
_STYLE = "body{font-family:system-ui,sans-serif;max-width:32em;margin:4em auto;padding:0 1em}"


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="robots" content="noindex"><title>{title}</title><style>{_STYLE}</style>'
        f"</head><body>{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status, headers=SECURITY_HEADERS)


_BUTTON = (
    '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
    '<button type="submit">Unsubscribe</button></form>'
)
NOT_FOUND = "<h1>Link not valid</h1><p>This unsubscribe link is not valid.</p>"


async def _email_for(request: Request) -> tuple[Email, Account] | None:
    """The email and account the token names, when its signature holds."""
    value = request.path_params["token"]
    email_id = unsubscribe.email_id_of(value)
    if email_id is None:
        return None
    async with app_state(request)["sessions"]() as session:
        email = await session.get(Email, email_id)
        account = None if email is None else await session.get(Account, email.account_id)
    if email is None or account is None or not unsubscribe.verify(account.link_secret, value):
        return None
    return email, account


def _business(account: Account) -> str:
    return html.escape(compliance_settings(account).business_name or account.name)


async def show(request: Request) -> HTMLResponse:
    found = await _email_for(request)
    if found is None:
        return _page("Link not valid", NOT_FOUND, 404)
    business = _business(found[1])
    if found[0].rep_id is not None:
        return _page(
            "Unsubscribe",
            f"<h1>Unsubscribe</h1><p>Stop emails from {business} about leads assigned to you? "
            "Texts are not affected.</p>" + _BUTTON,
        )
    return _page(
        "Unsubscribe",
        f"<h1>Unsubscribe</h1><p>Stop emails and texts from {business}?</p>" + _BUTTON,
    )


async def record(request: Request) -> HTMLResponse:
    try:
        body = await asyncio.wait_for(request.body(), READ_TIMEOUT)
    except TimeoutError:
        return _page("Too slow", "<h1>Request timed out</h1>", 408)
    found = await _email_for(request)
    if found is None:
        return _page("Link not valid", NOT_FOUND, 404)
    if body.strip() != unsubscribe.ONE_CLICK.encode():
        # Our button and RFC 8058 both send exactly this; anything else is not a request to stop.
        return _page("Not understood", "<h1>Nothing changed</h1>", 400)
    email, account = found
    if email.rep_id is not None:
        return await _stop_rep_notices(request, email, account)
    async with transaction(app_state(request)["sessions"]) as session:
        lead = await session.get(Lead, email.lead_id)
        if lead is None or lead.account_id != account.id:
            return _page("Link not valid", NOT_FOUND, 404)
        # Under the lead's contact lock, like the sender's gate check: an email being gated
        # now either sees this opt-out or was claimed before it.
        await lock_contact(session, account.id, lead.phone)
        if not await optouts.email_unsubscribed(session, account.id, email.to_address):
            await optouts.record(
                session,
                account_id=account.id,
                phone=lead.phone,
                email=email.to_address,
                event=LedgerEvent.OPT_OUT,
                channel=Channel.EMAIL,
                source=LedgerSource.UNSUBSCRIBE_LINK,
                note=f"email {email.id}",
            )
            logger.info("email unsubscribe account=%s email=%s", account.id, email.id)
    business = _business(account)
    return _page(
        "Unsubscribed",
        f"<h1>You are unsubscribed</h1><p>{business} will send no more emails to this address, "
        "and no more texts to your phone unless you text START.</p>",
    )


async def _stop_rep_notices(request: Request, email: Email, account: Account) -> HTMLResponse:
    """A rep's notice email: stop these notices to its address, and nothing else (staff mail,
    not the consumer ledger: the rep's texts and any lead's email go on)."""
    async with transaction(app_state(request)["sessions"]) as session:
        rep = await session.get(Rep, email.rep_id)
        if rep is None or rep.account_id != account.id:
            return _page("Link not valid", NOT_FOUND, 404)
        await lock_contact(session, account.id, rep.phone)  # as the sender's gate check does
        address = email.to_address.strip().lower()
        if rep.notice_emails_stopped != address:
            rep.notice_emails_stopped, rep.notice_emails_stopped_at = address, now()
            session.add(rep)
            logger.info("rep notice emails stopped account=%s rep=%s", account.id, rep.id)
    return _page(
        "Unsubscribed",
        f"<h1>You are unsubscribed</h1><p>{_business(account)} will send no more emails about "
        "leads to this address.</p>",
    )


routes = [
    Route(f"{unsubscribe.PATH}/{{token}}", show, methods=["GET"]),
    Route(f"{unsubscribe.PATH}/{{token}}", record, methods=["POST"]),
]
