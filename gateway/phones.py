"""Phone numbers: parsed and validated with `phonenumbers`, stored as E.164."""

from __future__ import annotations

from typing import Annotated

import phonenumbers
from pydantic import AfterValidator, Field

DEFAULT_REGION = "US"


class InvalidPhone(ValueError):
    """The text is not a valid, dialable phone number."""


def to_e164(text: str, region: str = DEFAULT_REGION) -> str:
    """`(415) 555-0100` -> `+14155550100`; raises InvalidPhone with the reason."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(f"not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _e164_field(value: str) -> str:
    try:
        return to_e164(value)
    except InvalidPhone as exc:
        raise ValueError(str(exc)) from None


# A phone number field of a request model: any common format in, E.164 out, 422 otherwise.
Phone = Annotated[str, Field(min_length=1, max_length=40), AfterValidator(_e164_field)]
