"""Phone numbers as data: parsing any common format to E.164, and the time zone a number implies.

Pure functions over the `phonenumbers` library (Google's libphonenumber metadata); no I/O.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import timezone as number_zones

from talkturo.domain.accounts import is_timezone

DEFAULT_REGION = "US"
# libphonenumber's answer when it cannot place a number.
_UNKNOWN_ZONE = "Etc/Unknown"


class InvalidPhone(ValueError):
    """The text is not a valid, dialable phone number."""


def is_country(code: str) -> bool:
    """An ISO 3166-1 alpha-2 code of a country that has phone numbers (libphonenumber's list)."""
    return code in phonenumbers.SUPPORTED_REGIONS


def normalise_phone(raw: str, region: str | None = None) -> str:
    """`raw` in E.164 (`+14155550123`).

    International forms (`+44 20 …`, `0044 20 …` is not one) are read as they are; national forms
    (`(415) 555-0123`) are read as numbers of `region` (ISO alpha-2), by default the US.
    """
    text = raw.strip()
    if not text:
        raise InvalidPhone("must not be empty")
    hint = (region or DEFAULT_REGION).upper()
    if not is_country(hint):
        hint = DEFAULT_REGION
    try:
        number = phonenumbers.parse(text, hint)
    except phonenumbers.NumberParseException:
        raise InvalidPhone(
            f"{raw!r} is not a phone number; use E.164 such as +14155550123"
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(f"{raw!r} is not a valid phone number; use E.164 such as +14155550123")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def infer_timezone(e164: str | None) -> str | None:
    """The IANA zone of a number's area, the first when it spans several; None when unknown."""
    if not e164:
        return None
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    for zone in number_zones.time_zones_for_number(number):
        if zone != _UNKNOWN_ZONE and is_timezone(zone):
            return zone
    return None


def phone_digits(e164: str) -> list[str]:
    """What a search for a number may start with: all its digits, and its national digits."""
    international = e164.lstrip("+")
    try:
        national = str(phonenumbers.parse(e164, None).national_number)
    except phonenumbers.NumberParseException:
        return [international]
    return [international] if national == international else [international, national]
