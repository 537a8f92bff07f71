"""The `SMTP_URL` setting: where and how the email channel connects, read from one URL.

Below the channels (it imports nothing of ours), so `gateway.settings` validates the setting
and `gateway.email.transport` connects with it. Credentials in the URL are never logged:
`SmtpTarget.__repr__` leaves the password out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
STARTTLS_PORT = 587
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to connect: `smtp://user:pass@host:587?starttls=true` or `smtps://...`.

    `start_tls`: True requires STARTTLS, False never upgrades, None (no `starttls` in the URL)
    upgrades when the server offers it. `smtps://` is TLS from the first byte (port 465).
    """

    host: str
    port: int
    use_tls: bool = False
    start_tls: bool | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_smtp_url(url: str) -> SmtpTarget:
    """Read an SMTP URL; ValueError says what is wrong in one line."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError("must look like smtp://user:pass@host:587?starttls=true or smtps://...")
    if not parts.hostname:
        raise ValueError("has no host (smtp://user:pass@host:587)")
    options = dict(parse_qsl(parts.query))
    unknown = set(options) - {"starttls"}
    if unknown:
        raise ValueError(f"unknown option {sorted(unknown)[0]!r} (only starttls=true|false)")
    start_tls: bool | None = None
    if "starttls" in options:
        flag = options["starttls"].lower()
        if flag not in _TRUE + _FALSE:
            raise ValueError("starttls must be true or false")
        start_tls = flag in _TRUE
    if scheme == "smtps" and start_tls:
        raise ValueError("smtps:// is already TLS; starttls=true is for smtp://")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has a port that is not a number between 1 and 65535") from None
    if port is None:
        port = STARTTLS_PORT if start_tls else DEFAULT_PORTS[scheme]
    return SmtpTarget(
        host=parts.hostname,
        port=port,
        use_tls=scheme == "smtps",
        start_tls=start_tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )
