"""Console sign-in sessions, kept in Redis.

The cookie is `<key id>.<nonce>.<signature>`: the API key's id (never its secret), 256 random
bits, and an HMAC of both under a secret kept in Redis. The session itself is the Redis entry
`console:session:<nonce>` holding the key id, with a lifetime: signing out deletes it, so the
old cookie value is useless even if a copy of it survives in a browser or a log. Redis rather
than a table: every web process already shares it, sessions expire by themselves, and no
migration is needed; losing Redis's data only signs everyone out (it fails closed).

Every request re-reads the key and refuses it once revoked. The CSRF token is an HMAC of the
nonce (or, before sign-in, of a short-lived sign-in cookie's nonce), so it is bound to one
browser's session and cannot be made up by another site.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from arq.connections import ArqRedis
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.models import Account, ApiKey, KeyScope

COOKIE = "gw_console"
SIGN_IN_COOKIE = "gw_console_sign_in"
SESSION_SECONDS = 8 * 3600  # a working day; then sign in again
SIGN_IN_SECONDS = 3600  # how long a sign-in form stays usable
SECRET_KEY = "console:secret"
SESSION_PREFIX = "console:session:"


@dataclass(frozen=True)
class Session:
    account: Account
    key: ApiKey
    nonce: str

    @property
    def scope(self) -> KeyScope:
        return KeyScope(self.key.scope)


# Open to every signed-in key whatever its scope: signing in and out, the stylesheet, and the
# console's home (which leads to the Compliance page, open to every scope).
ANY_SCOPE_PATHS = ("/console", "/console/", "/console/sign-in", "/console/sign-out")
COMPLIANCE_PAGES = "/console/compliance"


def page_allowed(scope: KeyScope, method: str, path: str) -> bool:
    """Whether a key of `scope` may open this console page, as the API decides for its routes
    (gateway.auth.scope_allows): `full` everything, `read` GET pages only, `compliance` only the
    Compliance pages. Anything else is refused, so a new page is closed to them until listed."""
    if path in ANY_SCOPE_PATHS or path.startswith("/console/static/"):
        return True
    if scope == KeyScope.FULL:
        return True
    if scope == KeyScope.READ:
        return method in ("GET", "HEAD")
    if scope == KeyScope.COMPLIANCE:
        return path == COMPLIANCE_PAGES or path.startswith(COMPLIANCE_PAGES + "/")
    return False


async def _secret(redis: ArqRedis) -> bytes:
    # Created once by whichever process asks first (NX), then shared by all of them.
    candidate = secrets.token_hex(32)
    await redis.set(SECRET_KEY, candidate, nx=True)
    value = await redis.get(SECRET_KEY)
    if value is None:
        # Redis was flushed between the two calls: sign with the candidate, which matches no
        # stored session, so this request fails closed (signed out), not with a 500.
        return candidate.encode()
    return value if isinstance(value, bytes) else str(value).encode()


def _mac(secret: bytes, message: str) -> str:
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


async def csrf_token(redis: ArqRedis, nonce: str) -> str:
    return _mac(await _secret(redis), f"csrf.{nonce}")


async def csrf_ok(redis: ArqRedis, nonce: str | None, presented: str | None) -> bool:
    if not nonce or not presented:
        return False
    return hmac.compare_digest(await csrf_token(redis, nonce), presented)


def new_nonce() -> str:
    return secrets.token_urlsafe(32)


async def start(redis: ArqRedis, key: ApiKey) -> tuple[str, str]:
    """A new session for `key`: (cookie value, nonce)."""
    nonce = new_nonce()
    await redis.set(SESSION_PREFIX + nonce, key.id, ex=SESSION_SECONDS)
    payload = f"{key.id}.{nonce}"
    return f"{payload}.{_mac(await _secret(redis), payload)}", nonce


def _parse(cookie: str) -> tuple[str, str, str] | None:
    # The nonce (urlsafe base64) and the hex signature hold no dots; ids are `key_<hex>`.
    parts = cookie.split(".")
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


async def resume(redis: ArqRedis, db: AsyncSession, cookie: str | None) -> Session | None:
    """The signed-in session for a cookie value; None when forged, ended, expired or revoked."""
    parsed = _parse(cookie) if cookie else None
    if parsed is None:
        return None
    key_id, nonce, signature = parsed
    if not hmac.compare_digest(_mac(await _secret(redis), f"{key_id}.{nonce}"), signature):
        return None
    stored = await redis.get(SESSION_PREFIX + nonce)
    if stored is None or (stored.decode() if isinstance(stored, bytes) else stored) != key_id:
        return None
    query = (
        select(Account, ApiKey)
        .join(ApiKey, col(ApiKey.account_id) == Account.id)
        .where(ApiKey.id == key_id, col(ApiKey.revoked_at).is_(None))
    )
    row = (await db.exec(query)).first()
    return None if row is None else Session(row[0], row[1], nonce)


async def end(redis: ArqRedis, nonce: str) -> None:
    await redis.delete(SESSION_PREFIX + nonce)
