"""The scheduling tool: check availability and book a meeting live, with Cal.com or Calendly.

The model gets two functions (`specs`): `check_availability` (ISO dates from the caller's words,
optionally a time zone) and `book_meeting` (a start time it was offered, name, email, optional
phone and notes). `run` performs one call and answers what the model reads next, plus the
`Booking` when one was made; provider failures become `{"error": ...}`, never exceptions.

Times spoken to the caller are in the first valid zone of: the function's `timezone` argument,
the tool's configured zone, `call["timezone"]` (the contact's), UTC.

Cal.com, API v2 (https://cal.com/docs/api-reference/v2), `Authorization: Bearer <api key>`:
- `GET /v2/slots?eventTypeId=<id>&start=<UTC ISO>&end=<UTC ISO>&timeZone=<zone>` with
  `cal-api-version: 2024-09-04` → `{"status": "success", "data": {"<YYYY-MM-DD>":
  [{"start": "<ISO with offset>"}, ...]}}` (the older `/v2/slots/available` is superseded).
- `POST /v2/bookings` with `cal-api-version: 2024-08-13`, body `{"start": "<UTC ISO>",
  "eventTypeId": <int>, "attendee": {"name", "email", "timeZone", "phoneNumber"?},
  "bookingFieldsResponses": {"notes"}?, "metadata": {"talkturo_call_id"}?}` → 201
  `{"status": "success", "data": {"id", "uid", "start", "end", "status", ...}}`.
- Errors: `{"status": "error", "error": {"code", "message"}}`.

Calendly, API v2 (https://developer.calendly.com), `Authorization: Bearer <token>`:
- `GET /event_type_available_times?event_type=<uri>&start_time=<UTC ISO>&end_time=<UTC ISO>`
  (start not in the past, range at most 7 days) → `{"collection": [{"status": "available",
  "start_time": "<UTC ISO>", "invitees_remaining", "scheduling_url"}, ...]}`.
- `POST /invitees` (the Scheduling API; paid Calendly plans) body `{"event_type": <uri>,
  "start_time": "<UTC ISO>", "invitee": {"name", "email", "timezone",
  "text_reminder_number"?}}` → 201 `{"resource": {"uri", "event", "status": "active",
  "cancel_url", "reschedule_url", ...}}`. Notes are not sent: Calendly takes answers only to
  the event type's own questions (`questions_and_answers` with their text and position).
- Errors: `{"title", "message", "details"?}`.

Base URLs: `CALCOM_BASE_URL` (https://api.cal.com), `CALENDLY_BASE_URL`
(https://api.calendly.com). These are fixed provider hosts, so plain httpx is used (no SSRF
guard); the API key is only ever sent in the Authorization header and never logged.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from talkturo.domain.accounts import is_timezone
from talkturo.domain.assistant_tools import SchedulingConfig
from talkturo.domain.calls import Booking
from talkturo.logs import logger
from talkturo.voice.providers.base import ToolSpec

CHECK_AVAILABILITY = "check_availability"
BOOK_MEETING = "book_meeting"

CALCOM_SLOTS_VERSION = "2024-09-04"
CALCOM_BOOKINGS_VERSION = "2024-08-13"
REQUEST_TIMEOUT_SECONDS = 10.0
MAX_RANGE_DAYS = 7  # Calendly's limit for one availability request
MAX_SLOTS_SPOKEN = 8
CREDENTIALS_REJECTED = "scheduling credentials rejected"

PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

Result = tuple[dict[str, Any], Booking | None]


class _Failed(Exception):
    """A provider answer the model should hear as an error (already in its words)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --------------------------------------------------------------------------- specs


def specs(config: SchedulingConfig) -> list[ToolSpec]:
    return [
        ToolSpec(
            name=CHECK_AVAILABILITY,
            description=(
                'Find free meeting times. Turn what the caller said ("next Tuesday", "this '
                'week") into ISO dates. Returns up to a few start times; offer two or three.'
            ),
            parameters={
                "type": "object",
                "properties": {
                    "start_date": {
                        "type": "string",
                        "description": "First day to check, YYYY-MM-DD.",
                    },
                    "end_date": {
                        "type": "string",
                        "description": "Last day to check, YYYY-MM-DD (at most 7 days after "
                        "start_date). Omit to check one day.",
                    },
                    "timezone": {
                        "type": "string",
                        "description": "The caller's IANA time zone (e.g. America/Chicago), "
                        "only if they said where they are.",
                    },
                },
                "required": ["start_date"],
                "additionalProperties": False,
            },
        ),
        ToolSpec(
            name=BOOK_MEETING,
            description=(
                "Book the meeting at a start time check_availability returned, once the caller "
                "agreed to it and gave their name and email."
            ),
            parameters={
                "type": "object",
                "properties": {
                    "start": {
                        "type": "string",
                        "description": "Start time exactly as check_availability returned it "
                        "(ISO 8601 with offset).",
                    },
                    "name": {"type": "string", "description": "The caller's full name."},
                    "email": {"type": "string", "description": "The caller's email address."},
                    "phone": {
                        "type": "string",
                        "description": "The caller's phone number in E.164 (+14155550123), "
                        "if they gave one.",
                    },
                    "notes": {"type": "string", "description": "What the meeting is about."},
                    "timezone": {
                        "type": "string",
                        "description": "The caller's IANA time zone, if they said where they are.",
                    },
                },
                "required": ["start", "name", "email"],
                "additionalProperties": False,
            },
        ),
    ]


# --------------------------------------------------------------------------- helpers


def _zone(config: SchedulingConfig, arguments: dict[str, Any], call: dict[str, str]) -> ZoneInfo:
    asked = arguments.get("timezone")
    if asked:
        if not isinstance(asked, str) or not is_timezone(asked):
            raise _Failed(f"unknown time zone {asked!r}; use an IANA name like Europe/Berlin")
        return ZoneInfo(asked)
    for name in (config.timezone, call.get("timezone")):
        if name and is_timezone(name):
            return ZoneInfo(name)
    return ZoneInfo("UTC")


def _day(value: Any, field: str) -> date:
    if not isinstance(value, str):
        raise _Failed(f"{field} must be a date like 2025-03-04")
    try:
        return date.fromisoformat(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).date()
    except ValueError:
        raise _Failed(f"{field} must be a date like 2025-03-04") from None


def _instant(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _utc(moment: datetime, *, micro: bool = False) -> str:
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return text + (".000000Z" if micro else "Z")


def _local(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).isoformat(timespec="minutes")


def _clean_phone(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    digits = re.sub(r"[\s().-]", "", value)
    return digits if PHONE.match(digits) else None


def _provider_message(response: httpx.Response) -> str:
    """The provider's own explanation (Cal.com `error.message`, Calendly `message`), short."""
    try:
        payload = response.json()
    except ValueError:
        return ""
    if not isinstance(payload, dict):
        return ""
    error = payload.get("error")
    message = error.get("message") if isinstance(error, dict) else payload.get("message")
    details = payload.get("details")
    if isinstance(details, list) and details and isinstance(details[0], dict):
        message = f"{message} ({details[0].get('message', '')})"
    return str(message or "")[:200]


def _check(response: httpx.Response, action: str) -> Any:
    """The JSON of a successful answer, or `_Failed` with what the model should hear."""
    status = response.status_code
    if status in (401, 403):
        raise _Failed(CREDENTIALS_REJECTED)
    if status == 429:
        raise _Failed("the scheduling service is busy; try again in a moment")
    if status >= 500:
        raise _Failed("the scheduling service failed; try again in a moment")
    if status >= 400:
        detail = _provider_message(response)
        raise _Failed(f"{action} failed" + (f": {detail}" if detail else ""))
    try:
        return response.json()
    except ValueError:
        raise _Failed("the scheduling service gave an unreadable answer") from None


def _client(base_url: str, api_key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
        timeout=REQUEST_TIMEOUT_SECONDS,
    )


# --------------------------------------------------------------------------- availability


def _range(arguments: dict[str, Any], zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The instants to search: from the first day's start (or now) to the end of the last day."""
    first = _day(arguments.get("start_date"), "start_date")
    last = _day(arguments["end_date"], "end_date") if arguments.get("end_date") else first
    if last < first:
        raise _Failed("end_date is before start_date")
    last = min(last, first + timedelta(days=MAX_RANGE_DAYS - 1))
    now = datetime.now(UTC)
    start = max(datetime.combine(first, time(0), zone), now + timedelta(minutes=1))
    end = datetime.combine(last + timedelta(days=1), time(0), zone)
    if end <= start:
        raise _Failed("those dates are in the past; ask for a later day")
    return start, end


async def _calcom_slots(
    config: SchedulingConfig, zone: ZoneInfo, start: datetime, end: datetime
) -> list[datetime]:
    base = os.environ.get("CALCOM_BASE_URL", "https://api.cal.com")
    async with _client(base, config.api_key.get_secret_value()) as client:
        response = await client.get(
            "/v2/slots",
            params={
                "eventTypeId": config.event_type,
                "start": _utc(start),
                "end": _utc(end),
                "timeZone": zone.key,
            },
            headers={"cal-api-version": CALCOM_SLOTS_VERSION},
        )
    payload = _check(response, "checking availability")
    days = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(days, dict):
        raise _Failed("the scheduling service gave an unreadable answer")
    found = []
    for slots in days.values():
        for slot in slots if isinstance(slots, list) else []:
            text = slot.get("start") if isinstance(slot, dict) else slot
            if isinstance(text, str):
                found.append(_instant(text))
    return found


async def _calendly_slots(
    config: SchedulingConfig, start: datetime, end: datetime
) -> list[datetime]:
    base = os.environ.get("CALENDLY_BASE_URL", "https://api.calendly.com")
    async with _client(base, config.api_key.get_secret_value()) as client:
        response = await client.get(
            "/event_type_available_times",
            params={
                "event_type": config.event_type,
                "start_time": _utc(start, micro=True),
                "end_time": _utc(end, micro=True),
            },
        )
    payload = _check(response, "checking availability")
    collection = payload.get("collection") if isinstance(payload, dict) else None
    if not isinstance(collection, list):
        raise _Failed("the scheduling service gave an unreadable answer")
    return [
        _instant(item["start_time"])
        for item in collection
        if isinstance(item, dict)
        and item.get("status", "available") == "available"
        and isinstance(item.get("start_time"), str)
    ]


async def _availability(
    config: SchedulingConfig, arguments: dict[str, Any], zone: ZoneInfo
) -> dict[str, Any]:
    start, end = _range(arguments, zone)
    if config.provider == "calcom":
        found = await _calcom_slots(config, zone, start, end)
    else:
        found = await _calendly_slots(config, start, end)
    slots = sorted({moment for moment in found if start <= moment < end})
    result: dict[str, Any] = {
        "timezone": zone.key,
        "slots": [_local(moment, zone) for moment in slots[:MAX_SLOTS_SPOKEN]],
    }
    if len(slots) > MAX_SLOTS_SPOKEN:
        result["more_available"] = len(slots) - MAX_SLOTS_SPOKEN
    if not slots:
        result["note"] = "no free times in that range; suggest other days"
    return result


# --------------------------------------------------------------------------- booking


def _attendee(arguments: dict[str, Any]) -> tuple[str, str, str | None, str | None]:
    name = arguments.get("name")
    email = arguments.get("email")
    if not isinstance(name, str) or not name.strip():
        raise _Failed("the caller's name is needed to book")
    if not isinstance(email, str) or not EMAIL.match(email.strip()):
        raise _Failed("a valid email address is needed to book; ask the caller to spell it")
    notes = arguments.get("notes")
    return (
        name.strip(),
        email.strip(),
        _clean_phone(arguments.get("phone")),
        notes.strip()[:1000] if isinstance(notes, str) and notes.strip() else None,
    )


def _start_of(arguments: dict[str, Any], zone: ZoneInfo) -> datetime:
    value = arguments.get("start")
    try:
        start = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        start = None
    if start is None:
        raise _Failed("start must be a time check_availability returned (ISO 8601)")
    if start.tzinfo is None:
        start = start.replace(tzinfo=zone)
    if start <= datetime.now(UTC):
        raise _Failed("that time has already passed; offer another slot")
    return start


async def _calcom_book(
    config: SchedulingConfig,
    arguments: dict[str, Any],
    zone: ZoneInfo,
    call: dict[str, str],
) -> Booking:
    if not config.event_type.isdigit():
        raise _Failed("the scheduling tool is misconfigured (Cal.com needs a numeric event type)")
    start = _start_of(arguments, zone)
    name, email, phone, notes = _attendee(arguments)
    attendee: dict[str, Any] = {"name": name, "email": email, "timeZone": zone.key}
    if phone:
        attendee["phoneNumber"] = phone
    body: dict[str, Any] = {
        "start": _utc(start),
        "eventTypeId": int(config.event_type),
        "attendee": attendee,
    }
    if notes:
        body["bookingFieldsResponses"] = {"notes": notes}
    if call.get("id"):
        body["metadata"] = {"talkturo_call_id": call["id"][:500]}
    base = os.environ.get("CALCOM_BASE_URL", "https://api.cal.com")
    async with _client(base, config.api_key.get_secret_value()) as client:
        response = await client.post(
            "/v2/bookings", json=body, headers={"cal-api-version": CALCOM_BOOKINGS_VERSION}
        )
    payload = _check(response, "booking")
    data = payload.get("data") if isinstance(payload, dict) else None
    if isinstance(data, list) and data:  # a recurring event type: the first occurrence
        data = data[0]
    if not isinstance(data, dict) or not data.get("uid"):
        raise _Failed("the scheduling service gave an unreadable answer")
    try:
        booked_start = _instant(data["start"]) if data.get("start") else start
        booked_end = _instant(data["end"]) if data.get("end") else None
    except ValueError:
        booked_start, booked_end = start, None
    return Booking(
        provider="calcom",
        id=str(data["uid"]),
        start=booked_start,
        end=booked_end,
        timezone=zone.key,
        attendee_name=name,
        attendee_email=email,
        status=str(data.get("status") or "accepted"),
    )


async def _calendly_book(
    config: SchedulingConfig, arguments: dict[str, Any], zone: ZoneInfo
) -> Booking:
    start = _start_of(arguments, zone)
    name, email, phone, _notes = _attendee(arguments)
    invitee: dict[str, Any] = {"name": name, "email": email, "timezone": zone.key}
    if phone:
        invitee["text_reminder_number"] = phone
    body = {"event_type": config.event_type, "start_time": _utc(start), "invitee": invitee}
    base = os.environ.get("CALENDLY_BASE_URL", "https://api.calendly.com")
    async with _client(base, config.api_key.get_secret_value()) as client:
        response = await client.post("/invitees", json=body)
    payload = _check(response, "booking")
    resource = payload.get("resource") if isinstance(payload, dict) else None
    if not isinstance(resource, dict) or not resource.get("uri"):
        raise _Failed("the scheduling service gave an unreadable answer")
    status = resource.get("status") or "active"
    return Booking(
        provider="calendly",
        id=str(resource["uri"]),
        start=start.astimezone(UTC),
        timezone=zone.key,
        attendee_name=name,
        attendee_email=email,
        url=resource.get("reschedule_url") or resource.get("cancel_url"),
        status="accepted" if status == "active" else str(status),
    )


def _confirmation(booking: Booking, zone: ZoneInfo) -> dict[str, Any]:
    result: dict[str, Any] = {
        "booked": True,
        "status": booking.status,
        "start": _local(booking.start, zone),
        "timezone": zone.key,
        "name": booking.attendee_name,
        "email": booking.attendee_email,
    }
    if booking.end is not None:
        result["end"] = _local(booking.end, zone)
    if booking.status == "pending":
        result["note"] = "the host still has to confirm this booking"
    return result


# --------------------------------------------------------------------------- entry point


async def run(
    config: SchedulingConfig,
    tool_name: str,
    arguments: dict[str, Any],
    *,
    call: dict[str, str],
) -> Result:
    """Run one scheduling function; (what the model reads, the Booking if one was made)."""
    if not isinstance(arguments, dict):
        return {"error": "arguments must be an object"}, None
    log = {"tool": tool_name, "provider": config.provider, "call_id": call.get("id")}
    try:
        zone = _zone(config, arguments, call)
        if tool_name == CHECK_AVAILABILITY:
            return await _availability(config, arguments, zone), None
        if tool_name == BOOK_MEETING:
            if config.provider == "calcom":
                booking = await _calcom_book(config, arguments, zone, call)
            else:
                booking = await _calendly_book(config, arguments, zone)
            logger.info("meeting booked", extra={**log, "status": booking.status})
            return _confirmation(booking, zone), booking
        return {"error": f"unknown scheduling function {tool_name}"}, None
    except _Failed as failure:
        logger.warning("scheduling tool failed", extra={**log, "reason": failure.message})
        return {"error": failure.message}, None
    except ValueError:  # a time or field in the provider's answer that does not parse
        logger.warning("scheduling tool failed", extra={**log, "reason": "unreadable answer"})
        return {"error": "the scheduling service gave an unreadable answer"}, None
    except httpx.TimeoutException:
        logger.warning("scheduling tool timed out", extra=log)
        return {"error": "the scheduling service did not answer in time"}, None
    except httpx.HTTPError as error:
        logger.warning("scheduling tool failed", extra={**log, "reason": type(error).__name__})
        return {"error": "the scheduling service could not be reached"}, None
