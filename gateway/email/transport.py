"""SMTP: the message we build, and one delivery through `aiosmtplib`.

Errors are sorted the way SMTP itself sorts them (RFC 5321 section 4.2.1): a 4xx reply, a
refused or dropped connection or a timeout is transient (try again later); a 5xx reply is the
server's final word on this email (a bad mailbox, a refused sender or content).

Where to deliver (the `SMTP_URL` setting, read into an `SmtpTarget`) is `gateway.smtp_url`, below
the channels, so that `gateway.settings` can validate the setting without importing a channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

import aiosmtplib

from gateway.smtp_url import SmtpTarget

# Connect, each command and the DATA upload each get this long; a server slower than this is
# treated as unreachable (transient), well inside the worker's job timeout.
SMTP_TIMEOUT = 20.0


def domain_of(address: str) -> str:
    """The domain of an address like 'Acme <hi@acme.com>' ('localhost' if it has none)."""
    _, bare = parseaddr(address)
    return bare.rpartition("@")[2] or "localhost"


def new_message_id(email_id: str, from_address: str) -> str:
    """A Message-ID header value unique to this email, under the sender's domain."""
    return make_msgid(idstring=email_id.removeprefix("eml_"), domain=domain_of(from_address))


@dataclass(frozen=True)
class Outgoing:
    """One email as it leaves: headers and a plain-text body."""

    to: str
    sender: str
    subject: str
    body: str
    message_id: str
    reply_to: str | None = None
    date: datetime | None = None
    headers: tuple[tuple[str, str], ...] = ()  # more headers (List-Unsubscribe, ...)

    def message(self) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = self.to
        if self.reply_to:
            message["Reply-To"] = self.reply_to
        message["Subject"] = self.subject
        message["Message-ID"] = self.message_id
        if self.date is not None:
            message["Date"] = format_datetime(self.date)
        for name, value in self.headers:
            message[name] = value
        message.set_content(self.body)
        return message


class DeliveryError(Exception):
    """SMTP refused or could not take the email; `transient` says whether to try again."""

    def __init__(self, message: str, *, transient: bool, code: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.code = code


def classify(exc: Exception) -> DeliveryError:
    """Turn an aiosmtplib or socket error into a DeliveryError (transient or permanent)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        text = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
        # One recipient per email: its code decides; any temporary refusal is worth a retry.
        transient = any(400 <= c < 500 for c in codes)
        return DeliveryError(f"recipient refused: {text}", transient=transient, code=codes[0])
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        # Wrong credentials are the operator's to fix, not a verdict on this email: keep it
        # queued (and retried on the schedule) rather than fail every email at once.
        return DeliveryError(f"SMTP login refused: {exc.code} {exc.message}", transient=True)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        transient = not 500 <= exc.code < 600
        return DeliveryError(f"{exc.code} {exc.message}", transient=transient, code=exc.code)
    if isinstance(exc, aiosmtplib.SMTPException | OSError | TimeoutError):
        # Refused connection, TLS failure, timeout, dropped line, STARTTLS not offered.
        return DeliveryError(f"{type(exc).__name__}: {exc}", transient=True)
    raise exc


async def deliver(target: SmtpTarget, outgoing: Outgoing) -> str:
    """Hand one email to the SMTP server; its answer to DATA, or DeliveryError."""
    try:
        _refused, answer = await aiosmtplib.send(
            outgoing.message(),
            hostname=target.host,
            port=target.port,
            username=target.username,
            password=target.password,
            use_tls=target.use_tls,
            start_tls=target.start_tls,
            timeout=SMTP_TIMEOUT,
        )
    except Exception as exc:  # sorted by classify; anything it doesn't know is re-raised
        raise classify(exc) from exc
    return answer
