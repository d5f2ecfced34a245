"""The numbers the simulated carrier has on offer: a deterministic inventory per country.

Every number is E.164 and valid for its country and type according to `phonenumbers` (local:
fixed line; toll-free: toll free). US and CA local numbers carry real area codes, and so do the
toll-free ones (800, 833, 844, …). The same seed always gives the same numbers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberType

NUMBERS_PER_PREFIX = 12
MAX_TRIES_PER_NUMBER = 400

# (prefix after the country code, locality, region, lata, latitude, longitude, postal code)
_Place = tuple[str, str, str, str | None, float | None, float | None, str | None]

LOCAL: dict[str, list[_Place]] = {
    "US": [
        ("212", "New York", "NY", "132", 40.71, -74.0, "10001"),
        ("415", "San Francisco", "CA", "722", 37.77, -122.42, "94103"),
        ("512", "Austin", "TX", "558", 30.27, -97.74, "78701"),
        ("617", "Boston", "MA", "128", 42.36, -71.06, "02108"),
        ("305", "Miami", "FL", "460", 25.76, -80.19, "33101"),
        ("206", "Seattle", "WA", "674", 47.61, -122.33, "98101"),
    ],
    "CA": [
        ("416", "Toronto", "ON", "888", 43.65, -79.38, "M5H"),
        ("604", "Vancouver", "BC", "888", 49.28, -123.12, "V6B"),
        ("514", "Montreal", "QC", "888", 45.5, -73.57, "H2Y"),
        ("403", "Calgary", "AB", "888", 51.05, -114.07, "T2P"),
    ],
    "DE": [
        ("30", "Berlin", "BE", None, None, None, None),
        ("89", "München", "BY", None, None, None, None),
        ("40", "Hamburg", "HH", None, None, None, None),
        ("69", "Frankfurt am Main", "HE", None, None, None, None),
    ],
    "AT": [
        ("1", "Wien", "W", None, None, None, None),
        ("316", "Graz", "ST", None, None, None, None),
        ("732", "Linz", "OÖ", None, None, None, None),
    ],
    "CH": [
        ("44", "Zürich", "ZH", None, None, None, None),
        ("22", "Genève", "GE", None, None, None, None),
        ("31", "Bern", "BE", None, None, None, None),
        ("61", "Basel", "BS", None, None, None, None),
    ],
    "AE": [
        ("4", "Dubai", "DU", None, None, None, None),
        ("2", "Abu Dhabi", "AZ", None, None, None, None),
        ("6", "Sharjah", "SH", None, None, None, None),
    ],
}
TOLL_FREE: dict[str, list[str]] = {
    "US": ["800", "833", "844", "855"],
    "CA": ["866", "877", "888"],
    "DE": ["800"],
    "AT": ["800"],
    "CH": ["800"],
    "AE": ["800"],
}
COUNTRIES = tuple(LOCAL)


@dataclass(frozen=True)
class OfferedNumber:
    phone_number: str  # E.164
    friendly_name: str
    iso_country: str
    type: str  # "local" | "toll_free"
    area_code: str  # the prefix after the country code (NPA for US/CA)
    locality: str | None
    region: str | None
    lata: str | None
    latitude: float | None
    longitude: float | None
    postal_code: str | None
    rate_center: str | None


def _valid(candidate: str, country: str, kind: str) -> phonenumbers.PhoneNumber | None:
    try:
        parsed = phonenumbers.parse(candidate, country)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number_for_region(parsed, country):
        return None
    number_type = phonenumbers.number_type(parsed)
    if kind == "toll_free":
        return parsed if number_type == PhoneNumberType.TOLL_FREE else None
    fixed = (PhoneNumberType.FIXED_LINE, PhoneNumberType.FIXED_LINE_OR_MOBILE)
    return parsed if number_type in fixed else None


def _lengths(country: str, kind: str) -> list[int]:
    """National-number lengths the country uses for this type, most common first."""
    wanted = PhoneNumberType.TOLL_FREE if kind == "toll_free" else PhoneNumberType.FIXED_LINE
    example = phonenumbers.example_number_for_type(country, wanted)
    base = len(str(example.national_number)) if example is not None else 9
    return [base, base + 1, base - 1, base + 2]


def _generate(
    rng: random.Random, country: str, kind: str, prefix: str, taken: set[str]
) -> list[str]:
    code = str(phonenumbers.country_code_for_region(country))
    found: list[str] = []
    lengths = _lengths(country, kind)
    tries = 0
    while len(found) < NUMBERS_PER_PREFIX and tries < MAX_TRIES_PER_NUMBER * NUMBERS_PER_PREFIX:
        tries += 1
        length = lengths[0] if tries < MAX_TRIES_PER_NUMBER else rng.choice(lengths)
        rest = length - len(prefix)
        if rest <= 0:
            continue
        subscriber = str(rng.randint(2, 9)) + "".join(
            str(rng.randint(0, 9)) for _ in range(rest - 1)
        )
        if country in ("US", "CA") and subscriber[:3] == "555":
            continue  # 555 exchanges are fictional
        candidate = f"+{code}{prefix}{subscriber}"
        if candidate in taken or _valid(candidate, country, kind) is None:
            continue
        taken.add(candidate)
        found.append(candidate)
    return found


def build_inventory(seed: int = 2010) -> list[OfferedNumber]:
    """Every number on offer, in a stable order."""
    taken: set[str] = set()
    offered: list[OfferedNumber] = []
    for country in COUNTRIES:
        rng = random.Random(f"{seed}:{country}")
        for prefix, locality, region, lata, lat, lon, postal in LOCAL[country]:
            for number in _generate(rng, country, "local", prefix, taken):
                offered.append(
                    OfferedNumber(
                        phone_number=number,
                        friendly_name=_friendly(number, country),
                        iso_country=country,
                        type="local",
                        area_code=prefix,
                        locality=locality,
                        region=region,
                        lata=lata,
                        latitude=lat,
                        longitude=lon,
                        postal_code=postal,
                        rate_center=locality.upper()[:10] if lata else None,
                    )
                )
        for prefix in TOLL_FREE[country]:
            for number in _generate(rng, country, "toll_free", prefix, taken):
                offered.append(
                    OfferedNumber(
                        phone_number=number,
                        friendly_name=_friendly(number, country),
                        iso_country=country,
                        type="toll_free",
                        area_code=prefix,
                        locality=None,
                        region=None,
                        lata=None,
                        latitude=None,
                        longitude=None,
                        postal_code=None,
                        rate_center=None,
                    )
                )
    return offered


def _friendly(number: str, country: str) -> str:
    """As Twilio shows it: "(415) 555-0100" in North America, national format elsewhere."""
    parsed = phonenumbers.parse(number, country)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
