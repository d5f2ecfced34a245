"""Timezones for tests that dial real campaign contacts: the calling floor (08:00-21:00 in the
callee's time) cannot be switched off, so such a test picks a zone where it is day now."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

# Spread over the day: whatever the time, one of them reads between 10:00 and 19:00.
ZONES = [
    "Pacific/Honolulu",
    "America/Los_Angeles",
    "America/Chicago",
    "America/New_York",
    "Atlantic/Azores",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Auckland",
]


def awake_zone() -> str:
    """A timezone whose clock reads 10:00-19:00 now: inside the floor for hours."""
    now = datetime.now(UTC)
    return next(z for z in ZONES if 10 <= now.astimezone(ZoneInfo(z)).hour < 19)


def asleep_zone() -> str:
    """A timezone whose clock reads 23:00-07:00 now: outside the floor (the zones are never more
    than 4 hours apart, so one is always in that 8-hour span)."""
    now = datetime.now(UTC)
    return next(z for z in ZONES if now.astimezone(ZoneInfo(z)).hour in (23, 0, 1, 2, 3, 4, 5, 6))
