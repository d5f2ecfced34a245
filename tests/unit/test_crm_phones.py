"""Phone numbers: normalisation to E.164 and the time zone a number implies."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import timezone as number_zones

from talkturo.domain import phones
from talkturo.domain.accounts import is_timezone
from talkturo.domain.phones import InvalidPhone, infer_timezone, normalise_phone, phone_digits


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("(415) 555-0123", None, "+14155550123"),  # national US format, default region
        ("415.555.0123", "US", "+14155550123"),
        ("+1 415 555 0123", "DE", "+14155550123"),  # international wins over the hint
        ("030 1234567", "DE", "+49301234567"),  # national German format with a DE hint
        ("030 1234567", "de", "+49301234567"),  # the hint is case-insensitive
        ("+44 20 7946 0958", None, "+442079460958"),
        ("  +971 4 333 4444 ", None, "+97143334444"),
    ],
)
def test_common_formats_become_e164(raw: str, region: str | None, e164: str) -> None:
    # Given a number as people write it / When normalised / Then it is E.164
    assert normalise_phone(raw, region) == e164


@pytest.mark.parametrize("raw", ["", "   ", "hello", "12", "+1 415 555", "+882 1234"])
def test_garbage_and_impossible_numbers_are_refused(raw: str) -> None:
    with pytest.raises(InvalidPhone):
        normalise_phone(raw)


def test_an_unknown_region_hint_falls_back_to_the_us() -> None:
    # Given a hint that is no country / When a national number is read / Then as a US number
    assert normalise_phone("(415) 555-0123", "XX") == "+14155550123"


def test_a_german_national_number_is_not_valid_in_the_us() -> None:
    with pytest.raises(InvalidPhone):
        normalise_phone("030 1234567", "US")


@pytest.mark.parametrize(
    ("e164", "zone"),
    [
        ("+14155550123", "America/Los_Angeles"),
        ("+12125550123", "America/New_York"),
        ("+49301234567", "Europe/Berlin"),
        ("+97143334444", "Asia/Dubai"),
    ],
)
def test_timezone_is_inferred_from_the_area(e164: str, zone: str) -> None:
    assert infer_timezone(e164) == zone


@pytest.mark.parametrize(
    ("e164", "zone"),
    [
        ("+14155550123", "America/Los_Angeles"),  # US geographic: one zone
        ("+18005550199", None),  # US toll-free: Adak to Halifax to Guam, no one answer
        ("+447911123456", "Europe/Guernsey"),  # UK mobile: four zones, all London time
        ("+79161234567", None),  # Russian mobile: Kaliningrad to Kamchatka
        ("+49301234567", "Europe/Berlin"),
    ],
)
def test_several_zones_give_one_only_when_they_keep_the_same_time(
    e164: str, zone: str | None
) -> None:
    # Given a number libphonenumber places in one or several zones / When inferred
    # Then one zone only when they all share their winter and summer UTC offsets
    assert infer_timezone(e164) == zone


def test_zones_are_compared_in_the_year_asked_for() -> None:
    # Given Spain's mobile range (Madrid and the Canaries: an hour apart all year) and the UK's
    # When inferred for another year / Then the same answers (the offsets hold every year)
    assert infer_timezone("+34612345678", year=2030) is None
    assert infer_timezone("+447911123456", year=2030) == "Europe/Guernsey"


@pytest.mark.parametrize("e164", [None, "", "+8821234", "not a number"])
def test_no_zone_when_unknown(e164: str | None) -> None:
    assert infer_timezone(e164) is None


def test_phone_digits_give_international_and_national_forms() -> None:
    assert phone_digits("+14155550123") == ["14155550123", "4155550123"]
    assert phone_digits("+49301234567") == ["49301234567", "301234567"]


def _zone_the_long_way(e164: str, year: int) -> str | None:
    """`infer_timezone` as it reads a number parsed afresh for it."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    zones = sorted(
        zone
        for zone in number_zones.time_zones_for_number(number)
        if zone != "Etc/Unknown" and is_timezone(zone)
    )
    if not zones or len({phones._offsets(zone, year) for zone in zones}) > 1:
        return None
    return zones[0]


def _digits_the_long_way(e164: str) -> list[str]:
    international = e164.lstrip("+")
    try:
        national = str(phonenumbers.parse(e164, None).national_number)
    except phonenumbers.NumberParseException:
        return [international]
    return [international] if national == international else [international, national]


_E164ISH = st.one_of(
    st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True),
    st.sampled_from(["+14155550123", "+18005550199", "+447911123456", "+390612345678"]),
    st.text(max_size=16),
)


@settings(max_examples=300, deadline=None)
@given(e164=_E164ISH, zone_first=st.booleans())
def test_a_number_parsed_once_answers_as_parsed_each_time(e164: str, zone_first: bool) -> None:
    # Given a number whose time zone and search digits share one parse, asked in either order
    # When asked (twice: the second answer comes from what is kept) / Then as parsed afresh
    for _ in range(2):
        if zone_first:
            zone, digits = infer_timezone(e164, year=2026), phone_digits(e164)
        else:
            digits, zone = phone_digits(e164), infer_timezone(e164, year=2026)
        assert zone == (_zone_the_long_way(e164, 2026) if e164 else None)
        assert digits == _digits_the_long_way(e164)
