"""Calling compliance: when a campaign may dial a contact (SPEC §8, docs/campaigns-compliance.md).

Every campaign dial passes `decide` at claim time. A dial is allowed when every rule holds:

- the campaign's own window (hours and days), in the contact's local time when the campaign
  says so, else in the campaign's timezone;
- the compliance floor of data/calling_rules.yaml, always in the called party's local time: the
  country's hours (US federal 08:00-21:00) and those of every state the number belongs to
  (FL, OK, MD 08:00-20:00, at most 3 calls per 24 h).

The called party's timezone is the contact's own when it names a real zone, else the number's
(libphonenumber's timezone data). A number spanning several zones makes each of them a
candidate, and every rule must hold in every candidate: the strictest wins. No zone at all fails
closed: never dialled.

Each rule is turned into the exact set of UTC instants it allows over the next 8 days, cut at the
zone's offset changes, so a DST switch (an hour missing in spring, repeated in autumn) is read
as the wall clock reads it, and `next_open` is the first instant of the intersection, to the
second, not a minute-stepped guess. Pure: rules are data, the clock is an argument.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from importlib.resources import files
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
import yaml
from phonenumbers import geocoder
from phonenumbers import timezone as phone_timezones
from pydantic import BaseModel, Field, field_validator

# How far ahead next_open looks: a week and a day covers every weekday once, across a DST switch.
HORIZON = timedelta(days=8)
CAP_PERIOD = timedelta(hours=24)
UNKNOWN_TIMEZONE = "unknown timezone"
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_DAYS = frozenset(range(7))
# Offsets are sampled this often and the changes found by bisection; no zone changes its offset
# twice within an hour.
_OFFSET_STEP = 3600
_DAY = timedelta(days=1)
_HOURS = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]|24):([0-5][0-9])$")


# --------------------------------------------------------------------------- the rules, as data


def _hours(value: str) -> tuple[timedelta, timedelta]:
    match = _HOURS.match(value)
    if match is None:
        raise ValueError(f"hours must read HH:MM-HH:MM, not {value!r}")
    h1, m1, h2, m2 = (int(part) for part in match.groups())
    start, end = timedelta(hours=h1, minutes=m1), timedelta(hours=h2, minutes=m2)
    if not start < end <= _DAY:
        raise ValueError(f"hours {value!r} must end after they start, by 24:00")
    return start, end


class HoursRule(BaseModel):
    hours: str = Field(description="HH:MM-HH:MM in the called party's local time, end exclusive")
    citation: str = Field(min_length=1)

    @field_validator("hours")
    @classmethod
    def _valid_hours(cls, value: str) -> str:
        _hours(value)
        return value

    def span(self) -> tuple[timedelta, timedelta]:
        return _hours(self.hours)


class StateRule(HoursRule):
    name: str = Field(min_length=1, description="As libphonenumber's geocoder spells it")
    max_calls_per_24h: int | None = Field(default=None, ge=1)
    zones: list[str] = Field(
        default_factory=list, description="IANA zones lying wholly inside the state"
    )

    @field_validator("zones")
    @classmethod
    def _real_zones(cls, value: list[str]) -> list[str]:
        wrong = [name for name in value if _zone(name) is None]
        if wrong:
            raise ValueError(f"not IANA timezones: {wrong}")
        return value


class Floor(HoursRule):
    label: str = Field(min_length=1, description="How the audit names the rule")


class CountryRule(Floor):
    regions: list[str] = Field(min_length=1, description="libphonenumber regions it covers")
    states: dict[str, StateRule] = Field(default_factory=dict)


class CallingRules(BaseModel):
    """The compliance floor (data/calling_rules.yaml)."""

    countries: dict[str, CountryRule] = Field(default_factory=dict)
    default: Floor

    def country_of(self, region: str | None) -> CountryRule | None:
        return next((c for c in self.countries.values() if region in c.regions), None)


def load_calling_rules(text: str) -> CallingRules:
    return CallingRules.model_validate(yaml.safe_load(text))


@lru_cache(maxsize=1)
def get_calling_rules() -> CallingRules:
    """The rules shipped with the package, read once per process."""
    text = files("talkturo").joinpath("data/calling_rules.yaml").read_text("utf-8")
    return load_calling_rules(text)


# --------------------------------------------------------------------------- the public types


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@dataclass(frozen=True)
class CallWindow:
    """A campaign's own window. `end` is exclusive; an end at or before the start runs past
    midnight into the next day (the day it opens is the one `days` names)."""

    start: time
    end: time
    days: frozenset[int]  # 0 = Monday
    timezone: str  # the campaign's
    use_contact_timezone: bool
    allow_anytime: bool = False  # 00:00-24:00; the days and the floor still apply

    def __post_init__(self) -> None:
        if _zone(self.timezone) is None:
            raise ValueError(f"window timezone {self.timezone!r} is not an IANA timezone")
        if not self.days <= ALL_DAYS:
            raise ValueError(f"window days must be 0 (Monday) to 6, not {sorted(self.days)}")
        if self.start == self.end and not self.allow_anytime:
            raise ValueError("a window that ends when it starts never opens")

    def span(self) -> tuple[timedelta, timedelta]:
        if self.allow_anytime:
            return timedelta(0), _DAY
        start = timedelta(hours=self.start.hour, minutes=self.start.minute)
        end = timedelta(hours=self.end.hour, minutes=self.end.minute)
        return start, end if end > start else end + _DAY

    def label(self) -> str:
        hours = "anytime" if self.allow_anytime else f"{self.start:%H:%M}-{self.end:%H:%M}"
        days = "" if self.days == ALL_DAYS else f" {_days_text(self.days)}"
        return f"window {hours}{days}"


@dataclass(frozen=True)
class Callee:
    phone: str  # E.164
    timezone: str | None  # the contact's own, if set
    recent_dials: tuple[datetime, ...] = ()  # UTC times of this contact's dials (for caps)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str  # what decided, readable: "window 09:00-17:00 America/Chicago; FL 08:00-20:00"
    timezone: str | None  # the callee's resolved timezone
    local_time: datetime | None  # now in the callee's timezone
    next_open: datetime | None  # UTC; earliest instant >= now when allowed (None if permanent)
    permanent: bool  # never callable (unknown timezone, or no allowed time at all): skip


def _days_text(days: Iterable[int]) -> str:
    """mon-fri, sat,sun, mon,wed-fri: a run of three days or more is written with a dash."""
    ordered = sorted(days)
    runs: list[list[int]] = []
    for day in ordered:
        if runs and day == runs[-1][-1] + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(
        f"{DAY_NAMES[run[0]]}-{DAY_NAMES[run[-1]]}"
        if len(run) > 2
        else ",".join(DAY_NAMES[d] for d in run)
        for run in runs
    )


# --------------------------------------------------------------------------- who is called, where


def _parse(phone: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return None


def number_timezones(phone: str) -> tuple[str, ...]:
    """The zones libphonenumber gives the number (several for a number spanning zones)."""
    number = _parse(phone)
    if number is None:
        return ()
    names = phone_timezones.time_zones_for_number(number)
    return tuple(n for n in names if n != phone_timezones.UNKNOWN_TIMEZONE and _zone(n))


def candidate_timezones(phone: str, contact_timezone: str | None) -> tuple[str, ...]:
    """Where the called party may be: the contact's own zone if real, else the number's."""
    if _zone(contact_timezone) is not None:
        return (str(contact_timezone),)
    return number_timezones(phone)


def resolve_timezone(phone: str, contact_timezone: str | None) -> str | None:
    """The called party's timezone; a number spanning zones gives its first (decide checks all);
    None when unknown (the contact is never dialled)."""
    candidates = candidate_timezones(phone, contact_timezone)
    return candidates[0] if candidates else None


def _area_state(number: phonenumbers.PhoneNumber, country: CountryRule) -> str | None:
    # The geocoder says "Florida" for some ranges and "Miami, FL" for others.
    description = geocoder.description_for_number(number, "en")
    code = description.rsplit(", ", 1)[-1]
    if code in country.states:
        return code
    return next((c for c, s in country.states.items() if s.name == description), None)


def states_of(
    phone: str, timezone: str | None, rules: CallingRules | None = None
) -> frozenset[str]:
    """The states whose rules apply: the area code's, and any whose zones hold `timezone`."""
    rules = rules or get_calling_rules()
    number = _parse(phone)
    country = rules.country_of(phonenumbers.region_code_for_number(number) if number else None)
    if number is None or country is None:
        return frozenset()
    found = {code for code, state in country.states.items() if timezone in state.zones}
    area = _area_state(number, country)
    if area is not None:
        found.add(area)
    return frozenset(found)


# --------------------------------------------------------------------------- time as UTC spans

# [start, end) in UTC, sorted and disjoint.
Spans = list[tuple[datetime, datetime]]
# [start, end) in UTC during which a zone keeps one offset.
Pieces = list[tuple[datetime, datetime, timedelta]]


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _pieces(zone: ZoneInfo, start: datetime, end: datetime) -> Pieces:
    """[start, end) cut where the zone's UTC offset changes (DST and any other change)."""

    def offset(seconds: int) -> timedelta:
        return datetime.fromtimestamp(seconds, zone).utcoffset() or timedelta(0)

    cuts: list[datetime] = []
    probe, stop = math.floor(start.timestamp()), math.ceil(end.timestamp())
    current = offset(probe)
    while probe < stop:
        ahead = min(probe + _OFFSET_STEP, stop)
        if offset(ahead) == current:
            probe = ahead
            continue
        low, high = probe, ahead  # offset(low) == current != offset(high)
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if offset(middle) == current else (low, middle)
        cuts.append(_utc(high))
        probe, current = high, offset(high)
    bounds = [start, *(c for c in cuts if start < c < end), end]
    return [(a, b, a.astimezone(zone).utcoffset() or timedelta(0)) for a, b in pairwise(bounds)]


def _merge(spans: Iterable[tuple[datetime, datetime]]) -> Spans:
    merged: Spans = []
    for a, b in sorted(s for s in spans if s[0] < s[1]):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _intersect(left: Spans, right: Spans) -> Spans:
    out: Spans = []
    i = j = 0
    while i < len(left) and j < len(right):
        a, b = max(left[i][0], right[j][0]), min(left[i][1], right[j][1])
        if a < b:
            out.append((a, b))
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    return out


def _daily(pieces: Pieces, span: tuple[timedelta, timedelta], days: frozenset[int]) -> Spans:
    """The instants whose wall clock, on a day in `days`, reads within `span` of midnight.

    Within a piece the wall clock is UTC + offset, so each day's span maps to UTC exactly; a
    wall time the spring switch skips opens at the switch, and the hour the autumn switch
    repeats counts twice, as a clock on the wall would have it.
    """
    start, end = span
    found: list[tuple[datetime, datetime]] = []
    for low, high, offset in pieces:
        day: date = (low + offset).date() - _DAY  # a span past midnight opened the day before
        last = (high + offset).date()
        while day <= last:
            if day.weekday() in days:
                midnight = datetime.combine(day, time(), UTC) - offset
                found.append((max(midnight + start, low), min(midnight + end, high)))
            day += _DAY
    return _merge(found)


# --------------------------------------------------------------------------- the decision


@dataclass(frozen=True)
class _Rule:
    label: str
    zone: str | None  # set when the number has several zones: the rule holds in each
    allowed: Spans  # within [now, now + HORIZON)

    def holds_at(self, moment: datetime) -> bool:
        return any(a <= moment < b for a, b in self.allowed)


def _text(rules: Iterable[_Rule]) -> str:
    """The rules as the audit shows them: each once, with the zones it was read in if several."""
    zones: dict[str, list[str]] = {}
    for rule in rules:
        zones.setdefault(rule.label, []).extend([rule.zone] if rule.zone else [])
    parts = []
    for label, named in zones.items():
        if not named:
            parts.append(label)
        elif len(named) <= 3:
            parts.append(f"{label} in {', '.join(named)}")
        else:
            parts.append(f"{label} in {named[0]} and {len(named) - 1} other timezones")
    return "; ".join(parts)


def _per_zone(
    label: str,
    span: tuple[timedelta, timedelta],
    zones: Sequence[str],
    pieces: dict[str, Pieces],
    days: frozenset[int] = ALL_DAYS,
    name_zone: bool = False,
) -> list[_Rule]:
    """One rule per zone, each must hold. A lone zone is named only if `name_zone` (a floor's
    zone is the Decision's timezone; a window's may be the campaign's)."""
    if len(zones) == 1:
        named = f"{label} {zones[0]}" if name_zone else label
        return [_Rule(named, None, _daily(pieces[zones[0]], span, days))]
    return [_Rule(label, zone, _daily(pieces[zone], span, days)) for zone in zones]


def _cap_rule(
    label: str, cap: int, dials: Iterable[datetime], now: datetime, end: datetime
) -> _Rule:
    """At most `cap` dials in any 24 h: open once enough of the counted ones are 24 h old."""
    counted = sorted(d for d in dials if now - CAP_PERIOD < d <= now)
    opens = now if len(counted) < cap else counted[len(counted) - cap] + CAP_PERIOD
    return _Rule(label, None, [(opens, end)] if opens < end else [])


def _rules(
    window: CallWindow,
    callee: Callee,
    zones: tuple[str, ...],
    now: datetime,
    rules: CallingRules,
) -> list[_Rule]:
    end = now + HORIZON
    window_zones = zones if window.use_contact_timezone else (window.timezone,)
    pieces = {z: _pieces(ZoneInfo(z), now, end) for z in {*zones, *window_zones}}
    found: list[_Rule] = []
    if not (window.allow_anytime and window.days == ALL_DAYS):
        found += _per_zone(
            window.label(), window.span(), window_zones, pieces, window.days, name_zone=True
        )
    number = _parse(callee.phone)
    country = rules.country_of(phonenumbers.region_code_for_number(number) if number else None)
    floor: Floor = country or rules.default
    found += _per_zone(f"{floor.label} {floor.hours}", floor.span(), zones, pieces)
    for code in sorted(states_of(callee.phone, callee.timezone, rules)):
        state = country.states[code] if country else None
        if state is None:  # states_of names only states of the number's country
            continue
        found += _per_zone(f"{code} {state.hours}", state.span(), zones, pieces)
        cap = state.max_calls_per_24h
        if cap is not None:
            label = f"{code} max {cap} calls/24h"
            found.append(_cap_rule(label, cap, callee.recent_dials, now, end))
    return found


def decide(
    window: CallWindow, callee: Callee, now: datetime, rules: CallingRules | None = None
) -> Decision:
    """May `callee` be dialled at `now` (aware)? If not, when first, or never."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(UTC)
    zones = candidate_timezones(callee.phone, callee.timezone)
    if not zones:
        return Decision(False, UNKNOWN_TIMEZONE, None, None, None, True)
    local_time = now.astimezone(ZoneInfo(zones[0]))
    applied = _rules(window, callee, zones, now, rules or get_calling_rules())
    allowed: Spans = [(now, now + HORIZON)]
    for each in applied:
        allowed = _intersect(allowed, each.allowed)
    if allowed and allowed[0][0] == now:
        return Decision(True, _text(applied), zones[0], local_time, now, False)
    if not allowed:
        never = f"no time allowed in the next {HORIZON.days} days by {_text(applied)}"
        return Decision(False, never, zones[0], local_time, None, True)
    failing = _text(r for r in applied if not r.holds_at(now))
    return Decision(False, failing, zones[0], local_time, allowed[0][0], False)
