"""The account's phone numbers and Messaging Services as Twilio's REST API shows them:
`IncomingPhoneNumbers` (2010-04-01) and Messaging v1 `Services` with their `PhoneNumbers`.

The gateway asks these before it lets an account register a number: does the Twilio account own
it, does the service exist, and is the number in the service's sender pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twilio_sandbox.wire import API_VERSION, Form, TwilioError, is_e164, rfc2822

if TYPE_CHECKING:
    from twilio_sandbox.sandbox import MessagingService, OwnedNumber, Sandbox

MESSAGING_V1 = "/v1/Services"


def number_json(sb: Sandbox, owned: OwnedNumber) -> dict[str, Any]:
    uri = f"/{API_VERSION}/Accounts/{sb.account_sid}/IncomingPhoneNumbers/{owned.sid}.json"
    now = rfc2822(sb.clock.now())
    return {
        "account_sid": sb.account_sid,
        "api_version": API_VERSION,
        "capabilities": {"voice": True, "sms": True, "mms": True, "fax": False},
        "date_created": now,
        "date_updated": now,
        "friendly_name": owned.number,
        "phone_number": owned.number,
        "sid": owned.sid,
        "sms_method": owned.sms_method,
        "sms_url": owned.sms_url,
        "status": "in-use",
        "status_callback": owned.voice_status_callback,
        "uri": uri,
        "voice_method": owned.voice_method,
        "voice_url": owned.voice_url,
    }


def list_numbers(sb: Sandbox, form: Form) -> list[dict[str, Any]]:
    """Owned numbers, filtered by `PhoneNumber` as Twilio filters (exact E.164 here)."""
    wanted = form.get("PhoneNumber")
    owned = [n for n in sb.numbers.values() if not wanted or n.number == wanted]
    return [number_json(sb, n) for n in owned]


def buy_number(sb: Sandbox, form: Form) -> dict[str, Any]:
    """POST IncomingPhoneNumbers: the account buys `PhoneNumber` (any valid one is for sale)."""
    number = form.get("PhoneNumber")
    if not is_e164(number):
        raise TwilioError(21421, value=number)
    for name in ("SmsUrl", "VoiceUrl", "StatusCallback"):
        if not sb.callback_allowed(form.get(name)):
            raise TwilioError(21205, value=form.get(name))
    if number in sb.numbers:
        raise TwilioError(21422, value=number)
    owned = sb.add_number(
        number,
        sms_url=form.get("SmsUrl") or None,
        sms_method=form.get("SmsMethod") or "POST",
        voice_url=form.get("VoiceUrl") or None,
        voice_method=form.get("VoiceMethod") or "POST",
        voice_status_callback=form.get("StatusCallback") or None,
    )
    return number_json(sb, owned)


def fetch_number(sb: Sandbox, sid: str) -> dict[str, Any]:
    for owned in sb.numbers.values():
        if owned.sid == sid:
            return number_json(sb, owned)
    raise TwilioError(20404, status=404, path=sid)


def _service(sb: Sandbox, sid: str) -> MessagingService:
    service = sb.services.get(sid)
    if service is None:
        raise TwilioError(20404, status=404, path=f"{MESSAGING_V1}/{sid}")
    return service


def service_json(sb: Sandbox, sid: str) -> dict[str, Any]:
    service = _service(sb, sid)
    url = f"https://messaging.twilio.com{MESSAGING_V1}/{service.sid}"
    now = sb.clock.now().isoformat().replace("+00:00", "Z")
    return {
        "account_sid": sb.account_sid,
        "date_created": now,
        "date_updated": now,
        "friendly_name": service.friendly_name,
        "sid": service.sid,
        "url": url,
        "links": {"phone_numbers": f"{url}/PhoneNumbers"},
    }


def service_numbers_page(sb: Sandbox, sid: str) -> dict[str, Any]:
    """The service's sender pool, in Messaging v1's paging shape (`meta`), one page."""
    service = _service(sb, sid)
    url = f"https://messaging.twilio.com{MESSAGING_V1}/{service.sid}/PhoneNumbers"
    records = [
        {
            "account_sid": sb.account_sid,
            "capabilities": ["SMS", "MMS", "Voice"],
            "country_code": "US",
            "phone_number": number,
            "service_sid": service.sid,
            "sid": sb.numbers[number].sid,
            "url": f"{url}/{sb.numbers[number].sid}",
        }
        for number in service.numbers
        if number in sb.numbers
    ]
    return {
        "phone_numbers": records,
        "meta": {
            "page": 0,
            "page_size": max(50, len(records)),
            "first_page_url": url,
            "previous_page_url": None,
            "url": url,
            "next_page_url": None,
            "key": "phone_numbers",
        },
    }
