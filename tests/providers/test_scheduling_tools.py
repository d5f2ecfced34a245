"""The scheduling tool against local fakes of Cal.com and Calendly: availability, then booking."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from talkturo.domain.assistant_tools import SchedulingConfig
from talkturo.domain.calls import Booking
from talkturo.voice.tools import scheduling
from tests.asgi_server import served
from tests.providers.fake_scheduling import FakeCalcom, FakeCalendly

CAL_KEY = "cal_live_0123456789abcdef"
CALENDLY_TOKEN = "eyJraWQiOiJ0ZXN0LXRva2VuLTEyMzQ1Njc4OTAifQ"
EVENT_URI = "https://api.calendly.com/event_types/AAAAAAAAAAAAAAAA"
ZONE = "America/New_York"
CALL = {"id": "call_01J0TEST", "assistant_id": "asst_01J0TEST"}


def _slots() -> list[datetime]:
    """Three free times on one day three days ahead (15:00 and 16:30 UTC: the same New York
    day), and one five days ahead."""
    day = (datetime.now(UTC) + timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    first = day.replace(hour=15)
    return [first, first + timedelta(minutes=90), first + timedelta(days=2)]


def _local_day(moment: datetime) -> str:
    return moment.astimezone(ZoneInfo(ZONE)).date().isoformat()


def _config(provider: str, key: str, event_type: str) -> SchedulingConfig:
    return SchedulingConfig(provider=provider, api_key=key, event_type=event_type, timezone=ZONE)


def _run(config: SchedulingConfig, name: str, arguments: dict[str, Any]) -> Any:
    return asyncio.run(scheduling.run(config, name, arguments, call=CALL))


def test_specs_are_two_functions_the_model_can_fill() -> None:
    names = [spec.name for spec in scheduling.specs(_config("calcom", CAL_KEY, "123456"))]
    assert names == ["check_availability", "book_meeting"]
    book = scheduling.specs(_config("calcom", CAL_KEY, "123456"))[1]
    assert book.parameters["required"] == ["start", "name", "email"]
    assert book.parameters["type"] == "object"


def test_calcom_availability_then_booking(monkeypatch: pytest.MonkeyPatch) -> None:
    slots = _slots()
    fake = FakeCalcom(api_key=CAL_KEY, event_type_id=123456, slots=list(slots))
    config = _config("calcom", CAL_KEY, "123456")
    with served(fake.app) as base:
        monkeypatch.setenv("CALCOM_BASE_URL", base)
        result, booking = _run(config, "check_availability", {"start_date": _local_day(slots[0])})
        assert booking is None
        zone = ZoneInfo(ZONE)
        expected = [s.astimezone(zone).isoformat(timespec="minutes") for s in slots[:2]]
        assert result == {"timezone": ZONE, "slots": expected}

        asked = fake.requests[-1]
        assert asked["headers"]["cal-api-version"] == "2024-09-04"
        assert asked["headers"]["authorization"] == f"Bearer {CAL_KEY}"
        assert asked["query"]["eventTypeId"] == "123456"
        assert asked["query"]["timeZone"] == ZONE
        assert asked["query"]["start"].endswith("Z") and asked["query"]["end"].endswith("Z")

        result, booking = _run(
            config,
            "book_meeting",
            {
                "start": result["slots"][1],
                "name": "Ada Lovelace",
                "email": "ada@example.com",
                "phone": "+1 (415) 555-0123",
                "notes": "Pricing for 20 seats",
            },
        )
    assert isinstance(booking, Booking)
    assert booking.provider == "calcom"
    assert booking.id == fake.bookings[0]["uid"]
    assert booking.start == slots[1]
    assert booking.end == slots[1] + timedelta(minutes=30)
    assert booking.attendee_email == "ada@example.com"
    assert booking.status == "accepted"
    assert result["booked"] is True
    assert result["start"] == slots[1].astimezone(ZoneInfo(ZONE)).isoformat(timespec="minutes")
    assert booking.id not in json.dumps(result)  # nothing for the model to read out

    sent = fake.requests[-1]
    assert sent["headers"]["cal-api-version"] == "2024-08-13"
    assert sent["headers"]["authorization"] == f"Bearer {CAL_KEY}"
    assert sent["json"] == {
        "start": slots[1].strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventTypeId": 123456,
        "attendee": {
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "timeZone": ZONE,
            "phoneNumber": "+14155550123",
        },
        "bookingFieldsResponses": {"notes": "Pricing for 20 seats"},
        "metadata": {"talkturo_call_id": CALL["id"]},
    }


def test_calcom_taken_time_is_an_error_the_model_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    slots = _slots()
    fake = FakeCalcom(api_key=CAL_KEY, event_type_id=123456, slots=[slots[0]])
    with served(fake.app) as base:
        monkeypatch.setenv("CALCOM_BASE_URL", base)
        result, booking = _run(
            _config("calcom", CAL_KEY, "123456"),
            "book_meeting",
            {"start": slots[1].isoformat(), "name": "Ada", "email": "ada@example.com"},
        )
    assert booking is None
    assert result["error"].startswith("booking failed")
    assert "not available" in result["error"]


def test_calendly_availability_then_booking(monkeypatch: pytest.MonkeyPatch) -> None:
    slots = _slots()
    fake = FakeCalendly(token=CALENDLY_TOKEN, event_type=EVENT_URI, slots=list(slots))
    config = _config("calendly", CALENDLY_TOKEN, EVENT_URI)
    with served(fake.app) as base:
        monkeypatch.setenv("CALENDLY_BASE_URL", base)
        first, last = _local_day(slots[0]), _local_day(slots[2])
        result, booking = _run(
            config, "check_availability", {"start_date": first, "end_date": last}
        )
        assert booking is None
        zone = ZoneInfo(ZONE)
        assert result["slots"] == [s.astimezone(zone).isoformat(timespec="minutes") for s in slots]

        asked = fake.requests[-1]
        assert asked["headers"]["authorization"] == f"Bearer {CALENDLY_TOKEN}"
        assert asked["query"]["event_type"] == EVENT_URI
        # Calendly refuses a start in the past: the search starts now at the earliest.
        assert datetime.fromisoformat(asked["query"]["start_time"]) > datetime.now(UTC) - timedelta(
            minutes=1
        )

        result, booking = _run(
            config,
            "book_meeting",
            {"start": result["slots"][0], "name": "Ada Lovelace", "email": "ada@example.com"},
        )
    assert isinstance(booking, Booking)
    assert booking.provider == "calendly"
    assert booking.id == fake.invitees[0]["uri"]
    assert booking.id.startswith("https://api.calendly.com/scheduled_events/")
    assert booking.start == slots[0]
    assert booking.url == fake.invitees[0]["reschedule_url"]
    assert booking.status == "accepted"
    assert result["booked"] is True

    sent = fake.requests[-1]
    assert sent["path"] == "/invitees"
    assert sent["json"] == {
        "event_type": EVENT_URI,
        "start_time": slots[0].strftime("%Y-%m-%dT%H:%M:%SZ"),
        "invitee": {"name": "Ada Lovelace", "email": "ada@example.com", "timezone": ZONE},
    }


@pytest.mark.parametrize("provider", ["calcom", "calendly"])
def test_rejected_credentials_are_an_error_result(
    provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    slots = _slots()
    if provider == "calcom":
        fake: Any = FakeCalcom(api_key=CAL_KEY, event_type_id=123456, slots=list(slots))
        event_type, variable = "123456", "CALCOM_BASE_URL"
    else:
        fake = FakeCalendly(token=CALENDLY_TOKEN, event_type=EVENT_URI, slots=list(slots))
        event_type, variable = EVENT_URI, "CALENDLY_BASE_URL"
    config = _config(provider, "wrong-key-0000", event_type)
    with served(fake.app) as base:
        monkeypatch.setenv(variable, base)
        checked = _run(config, "check_availability", {"start_date": _local_day(slots[0])})
        booked = _run(
            config,
            "book_meeting",
            {"start": slots[0].isoformat(), "name": "Ada", "email": "ada@example.com"},
        )
    assert checked == ({"error": "scheduling credentials rejected"}, None)
    assert booked == ({"error": "scheduling credentials rejected"}, None)
    assert len(fake.requests) == 2  # both reached the provider, which refused them
    assert len(fake.slots) == 3


def test_bad_arguments_never_reach_the_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCalcom(api_key=CAL_KEY, event_type_id=123456, slots=_slots())
    config = _config("calcom", CAL_KEY, "123456")
    with served(fake.app) as base:
        monkeypatch.setenv("CALCOM_BASE_URL", base)
        past = _run(config, "check_availability", {"start_date": "2001-01-01"})
        garbled = _run(config, "check_availability", {"start_date": "next tuesday"})
        zone = _run(config, "check_availability", {"start_date": "2030-01-01", "timezone": "Mars"})
        email = _run(
            config,
            "book_meeting",
            {"start": "2030-01-01T10:00:00+00:00", "name": "Ada", "email": "ada at example"},
        )
        unknown = _run(config, "cancel_meeting", {})
    assert "past" in past[0]["error"]
    assert "date" in garbled[0]["error"]
    assert "time zone" in zone[0]["error"]
    assert "email" in email[0]["error"]
    assert "unknown" in unknown[0]["error"]
    assert fake.requests == []


def test_unreachable_provider_is_an_error_result(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("CALCOM_BASE_URL", f"http://127.0.0.1:{port}")
    result, booking = _run(
        _config("calcom", CAL_KEY, "123456"),
        "check_availability",
        {"start_date": _local_day(_slots()[0])},
    )
    assert booking is None
    assert result == {"error": "the scheduling service could not be reached"}
