"""Where a webhook may point: SSRF protection for subscription URLs.

A customer's URL is fetched by our workers, from inside our network. So: https outside
development, nothing but a plain http(s) URL (no credentials, no whitespace or control
characters), and every address the host resolves to must be a public one, unless the operator
allowed the account private addresses (an on-premises CRM, or a test receiver on 127.0.0.1).
The check runs when the URL is saved and again before every request, because DNS can change
between the two; the request then connects to the addresses this check approved and nothing
else (`sending` pins them), so a name that rebinds after the check can't redirect it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

import httpx
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.clock import now
from gateway.models import WebhookPolicy

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
RESOLVE_TIMEOUT = 5.0
MAX_URL_LENGTH = 2048

# Not globally reachable (IANA special-purpose registries), listed here rather than left to
# `is_global` alone, whose answers change between Python versions (3.11 calls 224/4, fec0::/10,
# ::/96 and 64:ff9b:1::/48 global). Both must pass.
_REFUSED_V4 = tuple(
    ipaddress.IPv4Network(net)
    for net in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    )
)  # fmt: skip
_REFUSED_V6 = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "::/96",  # ::, ::1 and the deprecated IPv4-compatible ::a.b.c.d
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64", "2001::/23", "2001:db8::/32", "3fff::/20", "5f00::/16",
        "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    )
)  # fmt: skip
# Where the last 32 bits are an IPv4 address: IPv4-compatible, IPv4-translated, NAT64.
_CARRY_LOW32 = tuple(
    ipaddress.IPv6Network(net) for net in ("::/96", "::ffff:0:0:0/96", "64:ff9b::/96")
)

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's answer for `host`, looked up in a thread (loop.getaddrinfo)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


# Where names are looked up; read at call time, so a test can answer with a DNS it controls.
RESOLVER: Resolver = system_resolver


class AddressRefused(ValueError):
    """The URL may not be used; the message says why, for the API error or the delivery log.

    `permanent`: the URL's text rules it out, so trying again later can't help (unlike a name
    that does not resolve, or resolves to a private address today)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class Target:
    """A checked URL: the request goes to `url`, connecting only to `addresses`."""

    url: httpx.URL
    host: str  # as the HTTP client connects to it (IDNA-encoded, IPv6 without brackets)
    port: int
    addresses: tuple[IpAddress, ...]


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries, by the translations that reach them."""
    found: list[ipaddress.IPv4Address] = []
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if int(address) > 1 and any(address in net for net in _CARRY_LOW32):  # not :: or ::1
        found.append(low32)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)  # (server, client)
    return found


def public(address: IpAddress) -> bool:
    """Whether `address`, and every IPv4 address embedded in it, is globally reachable."""
    if isinstance(address, ipaddress.IPv4Address):
        return (
            address.is_global
            and not address.is_multicast
            and not any(address in net for net in _REFUSED_V4)
        )
    if address.ipv4_mapped is not None:  # ::ffff:10.0.0.1 is 10.0.0.1
        return public(address.ipv4_mapped)
    if not address.is_global or any(address in net for net in _REFUSED_V6):
        return False
    return all(public(inner) for inner in embedded_ipv4(address))


def _numeric_last_label(host: str) -> bool:
    label = host.rstrip(".").rsplit(".", 1)[-1].lower()
    return label.isdigit() or (
        label.startswith("0x") and all(c in "0123456789abcdef" for c in label[2:])
    )


# Every delivery checks its subscription's URL: the text's verdict is kept for the URLs seen
# lately (a refusal raises, so is never kept). The addresses are resolved anew each time.
@lru_cache(maxsize=1024)
def check_form(url: str, *, https_required: bool) -> Target:
    """The parsed URL (no addresses yet), or a permanent AddressRefused for what the text alone
    rules out. Parsed by the HTTP client's own parser, so the check and the request agree."""

    def refuse(why: str) -> AddressRefused:
        return AddressRefused(why, permanent=True)

    if len(url) > MAX_URL_LENGTH:
        raise refuse(f"must be at most {MAX_URL_LENGTH} characters")
    for index, char in enumerate(url):
        # CR/LF would end the request line; other controls, format characters and spaces have
        # no business in a URL and different parsers disagree about them.
        if char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Cs"):
            raise refuse(
                f"must not contain whitespace or control characters (U+{ord(char):04X} at {index})"
            )
    try:
        parsed = httpx.URL(url)
        netloc = urlsplit(url).netloc
    except (httpx.InvalidURL, ValueError) as exc:
        raise refuse(f"not a valid URL: {exc}") from None
    host = parsed.raw_host.decode("ascii")
    if parsed.scheme not in ("http", "https") or not host:
        raise refuse("must be an absolute http(s) URL such as https://crm.example.com/hook")
    if https_required and parsed.scheme != "https":
        raise refuse("must use https")
    if parsed.userinfo or "@" in netloc:
        raise refuse("must not carry credentials; authenticate by the signature")
    if parsed.fragment or "#" in url:
        raise refuse("must not have a #fragment")
    port = parsed.port if parsed.port is not None else (443 if parsed.scheme == "https" else 80)
    if not 0 < port < 65536:
        raise refuse("port must be between 1 and 65535")
    if "%" in host:
        raise refuse("host must not contain '%' (percent-encoding or an IPv6 zone)")
    if ":" not in host and _numeric_last_label(host):
        # 2130706433, 0x7f.1, 127.1: one resolver reads an IPv4 address, another a name.
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise refuse("an IPv4 address must be written as four decimal numbers") from None
    return Target(parsed, host, port, ())


async def resolve(host: str, port: int) -> list[IpAddress]:
    """Every address `host` resolves to, once (an IP literal resolves to itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            answers = await RESOLVER(host, port)
        found = [ipaddress.ip_address(answer) for answer in answers]
    except (OSError, TimeoutError, ValueError):
        raise AddressRefused(f"host {host!r} does not resolve") from None
    return list(dict.fromkeys(found))


async def check_url(url: str, *, https_required: bool, allow_private: bool) -> Target:
    """The URL and the addresses it may be fetched from right now, or AddressRefused."""
    target = check_form(url, https_required=https_required)
    addresses = await resolve(target.host, target.port)
    if not addresses:
        raise AddressRefused(f"host {target.host!r} does not resolve")
    if not allow_private:
        for address in addresses:
            if not public(address):
                embeds = (
                    [str(inner) for inner in embedded_ipv4(address)] if address.version == 6 else []
                )
                carried = f" (carrying {', '.join(embeds)})" if embeds else ""
                raise AddressRefused(
                    f"{target.host} resolves to {address}{carried}, a loopback, private or "
                    "reserved address"
                )
    return Target(target.url, target.host, target.port, tuple(addresses))


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
