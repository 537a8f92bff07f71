"""Where a webhook may point: SSRF protection for subscription URLs.

A customer's URL is fetched by our workers, from inside our network. So: https outside
development, no credentials in the URL, and every address the host resolves to must be a
public one, unless the operator allowed the account private addresses (an on-premises CRM, or
a test receiver on 127.0.0.1). The check runs when the URL is saved and again before every
request, because DNS can change between the two (rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.clock import now
from gateway.models import WebhookPolicy

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
RESOLVE_TIMEOUT = 5.0


class AddressRefused(ValueError):
    """The URL may not be used; the message says why, for the API error or the delivery log."""


def _public(address: IpAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    return address.is_global and not address.is_multicast


def check_form(url: str, *, https_required: bool) -> tuple[str, int]:
    """The URL's host and port, or AddressRefused for what the text alone rules out."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise AddressRefused("not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AddressRefused("must be an absolute http(s) URL such as https://crm.example.com/hook")
    if https_required and parts.scheme != "https":
        raise AddressRefused("must use https")
    if parts.username is not None or parts.password is not None:
        raise AddressRefused("must not carry credentials; authenticate by the signature")
    if parts.fragment:
        raise AddressRefused("must not have a #fragment")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def resolve(host: str, port: int) -> list[IpAddress]:
    """Every address `host` resolves to (an IP literal resolves to itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError):
        raise AddressRefused(f"host {host!r} does not resolve") from None
    return [ipaddress.ip_address(info[4][0]) for info in infos]


async def check_url(url: str, *, https_required: bool, allow_private: bool) -> None:
    """Raise AddressRefused unless `url` may receive webhooks right now."""
    host, port = check_form(url, https_required=https_required)
    addresses = await resolve(host, port)
    if not addresses:
        raise AddressRefused(f"host {host!r} does not resolve")
    if allow_private:
        return
    for address in addresses:
        if not _public(address):
            raise AddressRefused(
                f"{host} resolves to {address}, a loopback, private or reserved address"
            )


async def allows_private(session: AsyncSession, account_id: str) -> bool:
    """Whether the operator let this account's webhooks reach private addresses."""
    policy = await session.get(WebhookPolicy, account_id)
    return policy is not None and policy.allow_private_addresses


async def set_private_allowed(session: AsyncSession, account_id: str, allowed: bool) -> None:
    """Operator action (CLI or tests), never reachable with the account's own API key: an
    account able to allow itself private addresses could make us fetch our own network."""
    policy = await session.get(WebhookPolicy, account_id)
    if policy is None:
        policy = WebhookPolicy(account_id=account_id)
    policy.allow_private_addresses, policy.updated_at = allowed, now()
    session.add(policy)
    await session.flush()
