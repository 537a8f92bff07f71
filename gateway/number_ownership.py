"""Does the Twilio account the gateway sends with own a number (and its Messaging Service)?

Asked before an account may register a number: IncomingPhoneNumbers filtered by the number,
then the service (Messaging v1) and its sender pool. Any Twilio account answers the same
questions, the sandbox included.
"""

from __future__ import annotations

import logging
from typing import Literal

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from gateway.settings import Settings
from gateway.twilio_client import build_twilio_client

log = logging.getLogger(__name__)

LOOKUP_TIMEOUT = 10.0
# A sender pool holds at most 400 numbers; one more page than that is plenty.
MAX_POOL = 1000


# What the Twilio account does not own, by the request field that names it.
Refusal = Literal["number", "messaging_service_sid"] | None


class OwnershipUnknown(Exception):
    """Twilio could not be asked (network, 5xx, our credentials refused)."""


async def _owns_number(client: Client, number: str) -> bool:
    found = await client.incoming_phone_numbers.list_async(phone_number=number, limit=20)
    return any(entry.phone_number == number for entry in found)


async def _service_has(client: Client, service_sid: str, number: str) -> bool:
    service = client.messaging.v1.services(service_sid)
    try:
        await service.fetch_async()
    except TwilioRestException as exc:
        if exc.status == 404:
            return False
        raise
    pool = await service.phone_numbers.list_async(limit=MAX_POOL)
    return any(entry.phone_number == number for entry in pool)


async def twilio_refusal(settings: Settings, number: str, service_sid: str | None) -> Refusal:
    """None when the configured Twilio account owns `number` and, when given, the service
    exists with the number in its pool; else what it does not own. OwnershipUnknown when
    Twilio can't say."""
    client = build_twilio_client(
        settings.twilio_sid,
        settings.twilio_token,
        api_base_url=settings.twilio_api_base_url,
        timeout=LOOKUP_TIMEOUT,
    )
    try:
        if not await _owns_number(client, number):
            return "number"
        if service_sid is not None and not await _service_has(client, service_sid, number):
            return "messaging_service_sid"
        return None
    except TwilioRestException as exc:
        log.warning("twilio number lookup failed: status=%s code=%s", exc.status, exc.code)
        raise OwnershipUnknown from None
    except (TwilioException, aiohttp.ClientError, OSError, TimeoutError) as exc:
        log.warning("twilio number lookup failed: %s", type(exc).__name__)
        raise OwnershipUnknown from None
    finally:
        await client.http_client.close()
