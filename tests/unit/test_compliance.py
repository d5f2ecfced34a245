"""Calling compliance: the floor under every campaign window, read in the called party's time."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from talkturo.domain.compliance import (
    ALL_DAYS,
    UNKNOWN_TIMEZONE,
    Callee,
    CallingRules,
    CallWindow,
    Decision,
    candidate_timezones,
    decide,
    get_calling_rules,
    load_calling_rules,
    resolve_timezone,
    states_of,
)

NY, CHICAGO, LA, BOISE = (
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "America/Boise",
)
NEW_YORK_NUMBER = "+12125550123"  # New York, NY: federal rule only
ILLINOIS_NUMBER = "+13125550123"  # Chicago, IL
MIAMI_NUMBER = "+13055550123"  # "Miami, FL" to the geocoder
FLORIDA_NUMBER = "+13525550123"  # "Florida" to the geocoder
OKLAHOMA_NUMBER = "+14055550123"  # Oklahoma City, OK; America/Chicago
MARYLAND_NUMBER = "+14105550123"  # Baltimore, MD
IDAHO_NUMBER = "+12085550123"  # America/Boise and America/Los_Angeles
LONDON_NUMBER = "+442071234567"
TOKYO_NUMBER = "+81312345678"
NO_ZONE_NUMBER = "+882123456789"  # an international network: libphonenumber knows no zone

# The shipped floor without its hours: to see the wall-clock arithmetic at 02:00, where the
# real floor never lets a window reach.
OPEN_ALL_DAY = load_calling_rules(
    """
countries:
  US: {label: federal, regions: [US], hours: "00:00-24:00", citation: test}
default: {label: floor, hours: "00:00-24:00", citation: test}
"""
)


def local(zone: str, *parts: int) -> datetime:
    """A wall-clock moment; fold=0 (the first pass of a repeated hour)."""
    return datetime(*parts, tzinfo=ZoneInfo(zone))  # type: ignore[arg-type, misc]


def window(
    start: str = "09:00",
    end: str = "17:00",
    *,
    zone: str = NY,
    days: frozenset[int] = ALL_DAYS,
    contact_zone: bool = True,
    anytime: bool = False,
) -> CallWindow:
    return CallWindow(
        start=time.fromisoformat(start),
        end=time.fromisoformat(end),
        days=days,
        timezone=zone,
        use_contact_timezone=contact_zone,
        allow_anytime=anytime,
    )


ANYTIME = window(anytime=True)


def at(
    moment: datetime,
    phone: str = NEW_YORK_NUMBER,
    contact_zone: str | None = None,
    win: CallWindow = ANYTIME,
    dials: tuple[datetime, ...] = (),
    rules: CallingRules | None = None,
) -> Decision:
    return decide(win, Callee(phone, contact_zone, dials), moment, rules)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[arg-type, misc]


# --------------------------------------------------------------------------- the federal floor


def test_the_federal_floor_ends_at_21_00_exclusive_in_the_called_partys_time() -> None:
    last = at(local(NY, 2026, 12, 2, 20, 59, 59))
    assert last.allowed and last.next_open == last.local_time
    assert last.rule == "federal 08:00-21:00"
    closed = at(local(NY, 2026, 12, 2, 21, 0, 0))
    assert not closed.allowed and not closed.permanent
    assert closed.rule == "federal 08:00-21:00"
    assert closed.next_open == local(NY, 2026, 12, 3, 8, 0, 0)
    assert closed.timezone == NY
    assert closed.local_time is not None and closed.local_time.utcoffset() == timedelta(hours=-5)


def test_the_federal_floor_opens_at_08_00() -> None:
    assert not at(local(NY, 2026, 12, 2, 7, 59, 59)).allowed
    assert at(local(NY, 2026, 12, 2, 8, 0, 0)).allowed
    assert at(local(NY, 2026, 12, 2, 7, 59, 59)).next_open == utc(2026, 12, 2, 13, 0, 0)


def test_a_refusal_opens_to_the_second_not_the_next_minute() -> None:
    decision = at(local(NY, 2026, 12, 2, 7, 59, 0, 250_000))
    assert decision.next_open == utc(2026, 12, 2, 13, 0, 0)


def test_the_window_end_is_exclusive_and_names_its_timezone() -> None:
    assert at(local(NY, 2026, 12, 2, 16, 59, 59), win=window()).allowed
    closed = at(local(NY, 2026, 12, 2, 17, 0, 0), win=window())
    assert not closed.allowed
    assert closed.rule == f"window 09:00-17:00 {NY}"
    assert closed.next_open == local(NY, 2026, 12, 3, 9, 0, 0)


def test_an_allowed_dial_names_every_rule_that_held() -> None:
    decision = at(local(CHICAGO, 2026, 12, 2, 10, 0), MIAMI_NUMBER, CHICAGO, window())
    assert decision.allowed
    assert decision.rule == (
        f"window 09:00-17:00 {CHICAGO}; federal 08:00-21:00; FL 08:00-20:00; FL max 3 calls/24h"
    )


# --------------------------------------------------------------------------- DST


def test_spring_forward_opens_at_08_00_daylight_time() -> None:
    # 2026-03-08: 02:00 EST jumps to 03:00 EDT; the night before is EST (UTC-5), the morning EDT.
    evening = at(local(NY, 2026, 3, 7, 21, 0))
    assert evening.next_open == utc(2026, 3, 8, 12, 0)  # 08:00 EDT, not 13:00 UTC
    assert at(utc(2026, 3, 8, 11, 59, 59)).allowed is False  # 07:59:59 EDT
    assert at(utc(2026, 3, 8, 12, 0)).allowed


def test_fall_back_opens_at_08_00_standard_time() -> None:
    # 2026-11-01: 02:00 EDT goes back to 01:00 EST.
    evening = at(local(NY, 2026, 10, 31, 21, 0))
    assert evening.next_open == utc(2026, 11, 1, 13, 0)  # 08:00 EST
    assert not at(utc(2026, 11, 1, 12, 30)).allowed  # 07:30 EST, 08:30 by the old offset
    # the floor closes at 21:00 EST on the day of the switch
    assert at(utc(2026, 11, 2, 1, 59, 59)).allowed
    assert not at(utc(2026, 11, 2, 2, 0)).allowed


def test_a_window_in_the_skipped_hour_opens_when_the_clock_jumps() -> None:
    # 02:30 never happens on 2026-03-08 in New York: the first instant at or after it is 03:00 EDT.
    night = window("02:30", "03:30")
    decision = at(local(NY, 2026, 3, 8, 1, 0), win=night, rules=OPEN_ALL_DAY)
    assert decision.next_open == utc(2026, 3, 8, 7, 0)  # 03:00 EDT
    assert at(utc(2026, 3, 8, 7, 29, 59), win=night, rules=OPEN_ALL_DAY).allowed
    assert not at(utc(2026, 3, 8, 7, 30), win=night, rules=OPEN_ALL_DAY).allowed


def test_a_window_in_the_repeated_hour_opens_on_both_passes() -> None:
    night = window("01:00", "01:30")
    first = utc(2026, 11, 1, 5, 0)  # 01:00 EDT
    second = utc(2026, 11, 1, 6, 0)  # 01:00 EST
    assert at(first, win=night, rules=OPEN_ALL_DAY).allowed
    between = at(utc(2026, 11, 1, 5, 30), win=night, rules=OPEN_ALL_DAY)
    assert not between.allowed and between.next_open == second
    assert at(utc(2026, 11, 1, 6, 29, 59), win=night, rules=OPEN_ALL_DAY).allowed
    after = at(utc(2026, 11, 1, 6, 30), win=night, rules=OPEN_ALL_DAY)
    assert after.next_open == utc(2026, 11, 2, 6, 0)  # 01:00 EST the next night


# --------------------------------------------------------------------------- whose time


def test_the_window_is_read_in_the_contacts_timezone_when_asked() -> None:
    # 09:30 in New York is 06:30 in Los Angeles: the contact's window has not opened yet.
    decision = at(local(NY, 2026, 12, 2, 9, 30), NEW_YORK_NUMBER, LA, window())
    assert not decision.allowed
    assert decision.rule == f"window 09:00-17:00 {LA}; federal 08:00-21:00"
    assert decision.next_open == local(LA, 2026, 12, 2, 9, 0)
    assert decision.timezone == LA


def test_the_floor_is_read_in_the_called_partys_time_whatever_the_window_says() -> None:
    # The window is the campaign's (New York, open at 10:30), but it is 07:30 for the callee.
    campaign_time = window(contact_zone=False)
    decision = at(local(NY, 2026, 12, 2, 10, 30), NEW_YORK_NUMBER, LA, campaign_time)
    assert not decision.allowed
    assert decision.rule == "federal 08:00-21:00"
    assert decision.next_open == local(LA, 2026, 12, 2, 8, 0)
    allowed = at(local(NY, 2026, 12, 2, 11, 0), NEW_YORK_NUMBER, LA, campaign_time)
    assert allowed.rule == f"window 09:00-17:00 {NY}; federal 08:00-21:00"


def test_the_area_codes_state_is_stricter_than_the_contacts_timezone() -> None:
    # A Florida number whose contact lives in Chicago: Florida's 20:00 applies, in Chicago time.
    late = at(local(CHICAGO, 2026, 12, 2, 20, 30), MIAMI_NUMBER, CHICAGO)
    assert not late.allowed
    assert late.rule == "FL 08:00-20:00"
    assert late.next_open == local(CHICAGO, 2026, 12, 3, 8, 0)
    assert at(local(CHICAGO, 2026, 12, 2, 19, 59, 59), MIAMI_NUMBER, CHICAGO).allowed
    # the same hour in Chicago with an Illinois number: only the federal floor
    assert at(local(CHICAGO, 2026, 12, 2, 20, 30), ILLINOIS_NUMBER, CHICAGO).allowed


@pytest.mark.parametrize(
    ("phone", "state", "zone"),
    [
        (FLORIDA_NUMBER, "FL", NY),
        (OKLAHOMA_NUMBER, "OK", CHICAGO),
        (MARYLAND_NUMBER, "MD", NY),
    ],
)
def test_state_hours_end_at_20_00(phone: str, state: str, zone: str) -> None:
    assert at(local(zone, 2026, 12, 2, 19, 59, 59), phone).allowed
    refused = at(local(zone, 2026, 12, 2, 20, 0, 0), phone)
    assert not refused.allowed and refused.rule == f"{state} 08:00-20:00"
    assert not at(local(zone, 2026, 12, 2, 7, 59, 59), phone).allowed


def test_a_number_spanning_zones_must_pass_in_every_one() -> None:
    # Idaho's numbers run on Mountain (Boise) and Pacific time: 08:30 in Boise is 07:30 in LA.
    early = at(local(BOISE, 2026, 12, 2, 8, 30), IDAHO_NUMBER)
    assert not early.allowed
    assert early.rule == f"federal 08:00-21:00 in {LA}"
    assert early.next_open == local(LA, 2026, 12, 2, 8, 0)
    assert early.timezone == BOISE
    # and in the evening it is Boise that closes first
    late = at(local(LA, 2026, 12, 2, 20, 30), IDAHO_NUMBER)
    assert late.rule == f"federal 08:00-21:00 in {BOISE}"
    allowed = at(local(LA, 2026, 12, 2, 12, 0), IDAHO_NUMBER)
    assert allowed.rule == f"federal 08:00-21:00 in {BOISE}, {LA}"


def test_a_window_and_a_floor_that_never_meet_are_permanent() -> None:
    decision = at(local(NY, 2026, 12, 2, 12, 0), win=window("21:00", "23:00"))
    assert not decision.allowed and decision.permanent and decision.next_open is None
    assert decision.rule.startswith("no time allowed in the next 8 days by window 21:00-23:00")


def test_toll_free_numbers_have_every_nanp_zone_as_candidate() -> None:
    # No place: every zone from Guam to Newfoundland must be inside 08:00-21:00 at once.
    decision = at(utc(2026, 12, 2, 22, 0), "+18005550123")
    assert decision.allowed and "and 41 other timezones" in decision.rule
    assert not at(utc(2026, 12, 2, 21, 59, 59), "+18005550123").allowed
    # a 09:00-17:00 window in each of them never opens: skipped, never dialled
    assert at(utc(2026, 12, 2, 22, 0), "+18005550123", win=window()).permanent


# --------------------------------------------------------------------------- unknown: fail closed


@pytest.mark.parametrize(
    ("phone", "contact_zone"),
    [(NO_ZONE_NUMBER, None), (NO_ZONE_NUMBER, "Mars/Olympus_Mons"), ("not a number", None)],
)
def test_an_unknown_timezone_fails_closed(phone: str, contact_zone: str | None) -> None:
    decision = at(local(NY, 2026, 12, 2, 12, 0), phone, contact_zone)
    assert decision == Decision(
        allowed=False,
        rule=UNKNOWN_TIMEZONE,
        timezone=None,
        local_time=None,
        next_open=None,
        permanent=True,
    )


def test_the_contacts_own_timezone_makes_an_unknown_number_callable() -> None:
    assert at(local(NY, 2026, 12, 2, 12, 0), NO_ZONE_NUMBER, NY).allowed


def test_timezone_resolution() -> None:
    assert resolve_timezone(NEW_YORK_NUMBER, LA) == LA
    assert resolve_timezone(NEW_YORK_NUMBER, "Not/A_Zone") == NY  # a bad value falls back
    assert resolve_timezone(NEW_YORK_NUMBER, None) == NY
    assert resolve_timezone(NO_ZONE_NUMBER, None) is None
    assert candidate_timezones(IDAHO_NUMBER, None) == (BOISE, LA)
    assert candidate_timezones(IDAHO_NUMBER, LA) == (LA,)


# --------------------------------------------------------------------------- states


def test_the_state_comes_from_the_area_code_in_either_geocoder_form() -> None:
    rules = get_calling_rules()
    assert states_of(MIAMI_NUMBER, None) == {"FL"}  # "Miami, FL"
    assert states_of(FLORIDA_NUMBER, None) == {"FL"}  # "Florida"
    assert states_of(OKLAHOMA_NUMBER, None) == {"OK"}
    assert states_of(MARYLAND_NUMBER, None) == {"MD"}
    assert states_of(NEW_YORK_NUMBER, None) == set()
    assert states_of(LONDON_NUMBER, "Europe/London", rules) == set()
    assert states_of("+14165550123", None) == set()  # Toronto: not a US number


def test_a_state_applies_from_a_zone_that_lies_wholly_inside_it() -> None:
    # No IANA zone lies inside FL, OK or MD, so the shipped data lists none; a deployment's own
    # rules can name one, and a contact in that zone is then held to the state's rules.
    rules = load_calling_rules(
        """
countries:
  US:
    label: federal
    regions: [US]
    hours: "08:00-21:00"
    citation: test
    states:
      MI: {name: Michigan, hours: "10:00-19:00", zones: [America/Detroit], citation: test}
default: {label: floor, hours: "08:00-21:00", citation: test}
"""
    )
    assert states_of(NEW_YORK_NUMBER, "America/Detroit", rules) == {"MI"}
    shipped = at(local("America/Detroit", 2026, 12, 2, 9, 0), NEW_YORK_NUMBER, "America/Detroit")
    assert shipped.allowed  # the shipped rules: federal only
    strict = at(
        local("America/Detroit", 2026, 12, 2, 9, 0),
        NEW_YORK_NUMBER,
        "America/Detroit",
        rules=rules,
    )
    assert not strict.allowed and strict.rule == "MI 10:00-19:00"


def test_other_countries_are_held_to_the_default_floor() -> None:
    london = "Europe/London"
    assert at(local(london, 2026, 12, 2, 20, 59, 59), LONDON_NUMBER).rule == "floor 08:00-21:00"
    assert not at(local(london, 2026, 12, 2, 21, 0), LONDON_NUMBER).allowed


# --------------------------------------------------------------------------- frequency caps


def test_three_dials_in_24_hours_close_a_florida_number_until_the_oldest_expires() -> None:
    first = local(NY, 2026, 12, 2, 10, 0)
    dials = (first, first + timedelta(hours=2), first + timedelta(hours=4))
    now = first + timedelta(hours=6)
    assert at(now, FLORIDA_NUMBER, dials=dials[:2]).allowed  # two: a third is fine
    refused = at(now, FLORIDA_NUMBER, dials=dials)
    assert not refused.allowed and refused.rule == "FL max 3 calls/24h"
    assert refused.next_open == first + timedelta(hours=24)
    assert not at(first + timedelta(hours=24, seconds=-1), FLORIDA_NUMBER, dials=dials).allowed
    assert at(first + timedelta(hours=24), FLORIDA_NUMBER, dials=dials).allowed  # the 4th


def test_a_cap_that_expires_outside_the_window_waits_for_it() -> None:
    first = local(NY, 2026, 12, 2, 19, 30)
    dials = (first, first + timedelta(minutes=10), first + timedelta(minutes=20))
    refused = at(first + timedelta(minutes=25), FLORIDA_NUMBER, dials=dials)
    assert refused.next_open == first + timedelta(hours=24)  # 19:30 the next day: before 20:00
    # three dials on a Friday of a weekday campaign: they age out on Saturday, it opens Monday
    friday = local(NY, 2026, 12, 4, 10, 0)
    weekdays = window(days=frozenset(range(5)))
    dials = (friday, friday + timedelta(hours=1), friday + timedelta(hours=2))
    waits = at(friday + timedelta(hours=3), FLORIDA_NUMBER, win=weekdays, dials=dials)
    assert waits.rule == "FL max 3 calls/24h"
    assert waits.next_open == local(NY, 2026, 12, 7, 9, 0)


def test_more_dials_than_the_cap_wait_for_enough_of_them() -> None:
    first = local(NY, 2026, 12, 2, 9, 0)
    dials = tuple(first + timedelta(hours=h) for h in range(5))
    refused = at(first + timedelta(hours=6), FLORIDA_NUMBER, dials=dials)
    assert refused.next_open == dials[2] + timedelta(hours=24)  # two left in the last 24 h


def test_only_capped_states_count_dials() -> None:
    now = local(NY, 2026, 12, 2, 15, 0)
    dials = tuple(now - timedelta(hours=h) for h in range(1, 6))
    assert at(now, NEW_YORK_NUMBER, dials=dials).allowed
    old = tuple(now - timedelta(hours=24) for _ in range(5))  # exactly 24 h ago: not counted
    assert at(now, FLORIDA_NUMBER, dials=old).allowed


# --------------------------------------------------------------------------- days and anytime


def test_days_of_week_are_read_in_the_windows_time() -> None:
    weekdays = frozenset(range(5))
    saturday = local(NY, 2026, 12, 5, 12, 0)
    refused = at(saturday, win=window(days=weekdays))
    assert not refused.allowed and refused.rule == f"window 09:00-17:00 mon-fri {NY}"
    assert refused.next_open == local(NY, 2026, 12, 7, 9, 0)
    # Monday 10:00 in Tokyo is still Sunday in New York
    monday_tokyo = local("Asia/Tokyo", 2026, 12, 7, 10, 0)
    mondays = frozenset({0})
    assert at(monday_tokyo, TOKYO_NUMBER, "Asia/Tokyo", window(days=mondays)).allowed
    in_new_york = window(days=mondays, contact_zone=False)
    assert not at(monday_tokyo, TOKYO_NUMBER, "Asia/Tokyo", in_new_york).allowed


def test_allow_anytime_still_has_the_floor_and_the_days() -> None:
    assert not at(local(NY, 2026, 12, 2, 7, 0)).allowed
    assert at(local(NY, 2026, 12, 2, 20, 30)).allowed
    weekends = window(anytime=True, days=frozenset({5, 6}))
    refused = at(local(NY, 2026, 12, 2, 12, 0), win=weekends)
    assert refused.rule == f"window anytime sat,sun {NY}"
    assert refused.next_open == local(NY, 2026, 12, 5, 8, 0)


def test_a_window_past_midnight_belongs_to_the_day_it_opens() -> None:
    night = window("22:00", "02:00", days=frozenset({4}))  # Friday night
    saturday_early = local(NY, 2026, 12, 5, 1, 30)
    assert at(saturday_early, win=night, rules=OPEN_ALL_DAY).allowed
    assert not at(local(NY, 2026, 12, 5, 2, 0), win=night, rules=OPEN_ALL_DAY).allowed
    thursday = at(local(NY, 2026, 12, 3, 23, 0), win=night, rules=OPEN_ALL_DAY)
    assert thursday.next_open == local(NY, 2026, 12, 4, 22, 0)


# --------------------------------------------------------------------------- inputs and data


def test_a_window_must_be_valid() -> None:
    with pytest.raises(ValueError, match="IANA"):
        window(zone="Eastern")
    with pytest.raises(ValueError, match="never opens"):
        window("09:00", "09:00")
    with pytest.raises(ValueError, match="days"):
        window(days=frozenset({7}))
    with pytest.raises(ValueError, match="aware"):
        decide(window(), Callee(NEW_YORK_NUMBER, None), datetime(2026, 12, 2, 12, 0))


def test_the_shipped_rules_cite_their_sources() -> None:
    rules = get_calling_rules()
    us = rules.countries["US"]
    assert us.hours == "08:00-21:00" and "64.1200(c)(1)" in us.citation
    assert {code: (s.hours, s.max_calls_per_24h) for code, s in us.states.items()} == {
        "FL": ("08:00-20:00", 3),
        "OK": ("08:00-20:00", 3),
        "MD": ("08:00-20:00", 3),
    }
    assert "501.616" in us.states["FL"].citation
    assert "3168" in us.states["OK"].citation
    assert "Stop the Spam Calls Act" in us.states["MD"].citation


@pytest.mark.parametrize(
    "hours", ["8:00-21:00", "21:00-08:00", "08:00-24:30", "08:00-08:00", "08:00-25:00"]
)
def test_bad_hours_in_the_data_are_refused(hours: str) -> None:
    with pytest.raises(ValidationError):
        load_calling_rules(f'default: {{label: floor, hours: "{hours}", citation: x}}')


def test_a_state_zone_must_be_a_real_timezone() -> None:
    text = """
countries:
  US:
    label: federal
    regions: [US]
    hours: "08:00-21:00"
    citation: x
    states: {XX: {name: X, hours: "08:00-20:00", zones: [Nowhere/At_All], citation: x}}
default: {label: floor, hours: "08:00-21:00", citation: x}
"""
    with pytest.raises(ValidationError, match="IANA"):
        load_calling_rules(text)


# --------------------------------------------------------------------------- next_open, exactly


def _reference_allows(win: CallWindow, callee: Callee, moment: datetime) -> bool:
    """decide() rebuilt from wall clocks alone: what a watch in each zone would say."""
    rules = get_calling_rules()
    zones = candidate_timezones(callee.phone, callee.timezone)
    for zone in zones if win.use_contact_timezone else (win.timezone,):
        clock = moment.astimezone(ZoneInfo(zone))
        inside = win.allow_anytime or win.start <= clock.time() < win.end
        if clock.weekday() not in win.days or not inside:
            return False
    country = rules.countries["US"]
    for floor in [country, *(country.states[s] for s in states_of(callee.phone, callee.timezone))]:
        start, end = (time.fromisoformat(hhmm) for hhmm in floor.hours.split("-"))
        if not all(start <= moment.astimezone(ZoneInfo(z)).time() < end for z in zones):
            return False
        cap = getattr(floor, "max_calls_per_24h", None)
        recent = [d for d in callee.recent_dials if moment - timedelta(hours=24) < d <= moment]
        if cap is not None and len(recent) >= cap:
            return False
    return True


# Around both 2026 switches and an ordinary week.
_STARTS = [utc(2026, 3, 5), utc(2026, 10, 29), utc(2026, 12, 1)]
_ZONES = [None, NY, CHICAGO, LA, "America/Phoenix", "Pacific/Honolulu", "America/Anchorage"]
_PHONES = [NEW_YORK_NUMBER, MIAMI_NUMBER, OKLAHOMA_NUMBER, IDAHO_NUMBER, "+16055550123"]


@st.composite
def _cases(draw: st.DrawFn) -> tuple[CallWindow, Callee, datetime]:
    start = draw(st.integers(0, 23 * 60))
    end = draw(st.integers(start + 1, 24 * 60 - 1))
    days = draw(st.frozensets(st.integers(0, 6), min_size=1))
    win = CallWindow(
        start=time(start // 60, start % 60),
        end=time(end // 60, end % 60),
        days=days,
        timezone=draw(st.sampled_from([NY, LA, "America/Denver"])),
        use_contact_timezone=draw(st.booleans()),
        allow_anytime=draw(st.booleans()),
    )
    now = draw(st.sampled_from(_STARTS)) + timedelta(seconds=draw(st.integers(0, 6 * 86400)))
    ages = draw(st.lists(st.integers(0, 30 * 3600), max_size=5))
    callee = Callee(
        phone=draw(st.sampled_from(_PHONES)),
        timezone=draw(st.sampled_from(_ZONES)),
        recent_dials=tuple(now - timedelta(seconds=age) for age in ages),
    )
    return win, callee, now


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_cases(), fractions=st.lists(st.floats(0, 1, exclude_max=True), max_size=6))
def test_next_open_is_the_first_allowed_instant(
    case: tuple[CallWindow, Callee, datetime], fractions: list[float]
) -> None:
    win, callee, now = case
    decision = decide(win, callee, now)
    assert decision.allowed == _reference_allows(win, callee, now)
    if decision.permanent:
        hours = (now + timedelta(minutes=30 * k) for k in range(8 * 48))
        assert not any(_reference_allows(win, callee, t) for t in hours)
        return
    opens = decision.next_open
    assert opens is not None and now <= opens < now + timedelta(days=8)
    assert _reference_allows(win, callee, opens)
    assert decide(win, callee, opens).allowed
    if opens > now:
        assert not _reference_allows(win, callee, opens - timedelta(seconds=1))
        closed = int((opens - now).total_seconds())  # whole seconds: opens is exact
        for fraction in fractions:
            moment = now + timedelta(seconds=int(closed * fraction))
            assert not _reference_allows(win, callee, moment)


@pytest.mark.parametrize(
    ("days", "text"),
    [
        ({0, 1, 2, 3, 4}, "mon-fri"),
        ({5, 6}, "sat,sun"),
        ({0, 2, 3, 4}, "mon,wed-fri"),
        ({6}, "sun"),
    ],
)
def test_window_days_read_as_a_person_writes_them(days: set[int], text: str) -> None:
    assert window(days=frozenset(days)).label() == f"window 09:00-17:00 {text}"
