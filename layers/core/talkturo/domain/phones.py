"""Phone numbers as data: parsing any common format to E.164, and the time zone a number implies.

Pure functions over the `phonenumbers` library (Google's libphonenumber metadata); no I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

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


# Parsing a number costs about 0.1 ms, and one write reads the same number several times (the
# checks, the contact, its time zone, its search tokens): the last answers are kept. An
# invalid number is not kept, it raises each time.
_PARSED_MAX = 4096


def normalise_phone(raw: str, region: str | None = None) -> str:
    """`raw` in E.164 (`+14155550123`).

    International forms (`+44 20 …`, `0044 20 …` is not one) are read as they are; national forms
    (`(415) 555-0123`) are read as numbers of `region` (ISO alpha-2), by default the US.
    """
    return _normalised(raw, region)


@lru_cache(maxsize=_PARSED_MAX)
def _normalised(raw: str, region: str | None) -> str:
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


def infer_timezone(e164: str | None, *, year: int | None = None) -> str | None:
    """The IANA zone of a number's area; None when unknown or ambiguous.

    A number libphonenumber places in one zone gets that zone. One it places in several (a
    toll-free or mobile range) gets one only when they all keep the same UTC offsets through
    `year` (by default the current one): then the first by name, since any of them gives the
    same local time. When they differ there is no honest answer: None.
    """
    if not e164:
        return None
    return _zone(e164, year if year is not None else datetime.now(UTC).year)


@lru_cache(maxsize=_PARSED_MAX)
def _parsed_e164(e164: str) -> phonenumbers.PhoneNumber:
    """`phonenumbers.parse(e164, None)`, kept: a new number's time zone and its search digits
    both read it (neither changes what it answers)."""
    return phonenumbers.parse(e164, None)


@lru_cache(maxsize=_PARSED_MAX)
def _zone(e164: str, when: int) -> str | None:
    try:
        number = _parsed_e164(e164)
    except phonenumbers.NumberParseException:
        return None
    zones = sorted(
        zone
        for zone in number_zones.time_zones_for_number(number)
        if zone != _UNKNOWN_ZONE and is_timezone(zone)
    )
    if not zones:
        return None
    if len({_offsets(zone, when) for zone in zones}) > 1:
        return None
    return zones[0]


@lru_cache(maxsize=1024)
def _offsets(zone: str, year: int) -> tuple[timedelta | None, timedelta | None]:
    """A zone's UTC offsets in winter and in summer (1 January and 1 July of `year`)."""
    tz = ZoneInfo(zone)
    return (
        datetime(year, 1, 1, 12, tzinfo=tz).utcoffset(),
        datetime(year, 7, 1, 12, tzinfo=tz).utcoffset(),
    )


def phone_digits(e164: str) -> list[str]:
    """What a search for a number may start with: all its digits, and its national digits."""
    return list(_digits(e164))


@lru_cache(maxsize=_PARSED_MAX)
def _digits(e164: str) -> tuple[str, ...]:
    international = e164.lstrip("+")
    try:
        national = str(_parsed_e164(e164).national_number)
    except phonenumbers.NumberParseException:
        return (international,)
    return (international,) if national == international else (international, national)
