"""Local fakes of the Cal.com and Calendly endpoints the scheduling tool uses.

Both check what the real services check and answer with the documented shapes, and record every
request (method, path, query, headers, JSON body) in `requests`.

Cal.com API v2 (https://cal.com/docs/api-reference/v2):
- `GET /v2/slots` — header `cal-api-version: 2024-09-04`; query `eventTypeId`, `start`, `end`
  (UTC ISO 8601), `timeZone` (optional, default UTC). Answers `{"status": "success", "data":
  {"YYYY-MM-DD": [{"start": "<ISO with the zone's offset>"}]}}`, days in `timeZone`.
- `POST /v2/bookings` — header `cal-api-version: 2024-08-13`; body `start` (UTC ISO),
  `eventTypeId` (number), `attendee` {`name`, `email`, `timeZone`, `phoneNumber`?}. Answers 201
  `{"status": "success", "data": {"id", "uid", "title", "status": "accepted", "start", "end",
  "duration", "eventTypeId", "attendees", "location", ...}}`.
- `Authorization: Bearer <api key>`; failures are `{"status": "error", "error": {"code",
  "message"}}` (401 for a bad key, 400 for a bad request or an unavailable time).

Calendly API v2 (https://developer.calendly.com):
- `GET /event_type_available_times` — query `event_type` (URI), `start_time`, `end_time`
  (start not in the past, at most 7 days). Answers `{"collection": [{"status": "available",
  "invitees_remaining": 1, "start_time": "<UTC ISO>", "scheduling_url": ...}]}`.
- `POST /invitees` (Scheduling API) — body `event_type`, `start_time` (UTC), `invitee`
  {`email`, `timezone`, `name` or `first_name`, `text_reminder_number`?}. Answers 201
  `{"resource": {"uri", "event", "status": "active", "cancel_url", "reschedule_url", ...}}`.
- `Authorization: Bearer <token>`; failures are `{"title", "message", "details"?}`.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

CALENDLY_API = "https://api.calendly.com"


def _parse(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def _record(requests: list[dict[str, Any]], request: Request) -> dict[str, Any]:
    raw = await request.body()
    entry = {
        "method": request.method,
        "path": request.url.path,
        "query": dict(request.query_params),
        "headers": {k.lower(): v for k, v in request.headers.items()},
        "json": await request.json() if raw else None,
    }
    requests.append(entry)
    return entry


@dataclass
class FakeCalcom:
    api_key: str
    event_type_id: int
    slots: list[datetime]  # free start times (UTC)
    duration_minutes: int = 30
    requests: list[dict[str, Any]] = field(default_factory=list)
    bookings: list[dict[str, Any]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1001))

    @staticmethod
    def _error(status: int, code: str, message: str) -> JSONResponse:
        body = {"status": "error", "error": {"code": code, "message": message}}
        return JSONResponse(body, status_code=status)

    def _refused(self, entry: dict[str, Any], version: str) -> JSONResponse | None:
        if entry["headers"].get("authorization") != f"Bearer {self.api_key}":
            return self._error(401, "UnauthorizedException", "Invalid API Key")
        if entry["headers"].get("cal-api-version") != version:
            return self._error(400, "BadRequestException", f"cal-api-version must be {version}")
        return None

    @property
    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v2/slots")
        async def slots(request: Request) -> JSONResponse:
            entry = await _record(self.requests, request)
            refused = self._refused(entry, "2024-09-04")
            if refused is not None:
                return refused
            query = entry["query"]
            missing = [name for name in ("eventTypeId", "start", "end") if name not in query]
            if missing:
                return self._error(400, "BadRequestException", f"missing {', '.join(missing)}")
            if query["eventTypeId"] != str(self.event_type_id):
                return self._error(404, "NotFoundException", "Event type not found")
            start, end = _parse(query["start"]), _parse(query["end"])
            if start.utcoffset() != timedelta(0) or end.utcoffset() != timedelta(0):
                return self._error(400, "BadRequestException", "start and end must be in UTC")
            zone = ZoneInfo(query.get("timeZone", "UTC"))
            days: dict[str, list[dict[str, str]]] = {}
            for slot in sorted(self.slots):
                if start <= slot <= end:
                    local = slot.astimezone(zone)
                    text = local.isoformat(timespec="milliseconds")
                    days.setdefault(local.date().isoformat(), []).append({"start": text})
            return JSONResponse({"status": "success", "data": days})

        @app.post("/v2/bookings")
        async def book(request: Request) -> JSONResponse:
            entry = await _record(self.requests, request)
            refused = self._refused(entry, "2024-08-13")
            if refused is not None:
                return refused
            body = entry["json"] or {}
            attendee = body.get("attendee") or {}
            if not isinstance(body.get("eventTypeId"), int):
                return self._error(400, "BadRequestException", "eventTypeId must be a number")
            if body["eventTypeId"] != self.event_type_id:
                return self._error(404, "NotFoundException", "Event type not found")
            missing = [k for k in ("name", "email", "timeZone") if not attendee.get(k)]
            if missing or not isinstance(body.get("start"), str):
                return self._error(400, "BadRequestException", "start and attendee required")
            if not body["start"].endswith("Z"):
                return self._error(400, "BadRequestException", "start must be in UTC")
            start = _parse(body["start"])
            if start not in self.slots:
                return self._error(
                    400,
                    "BadRequestException",
                    "User either already has booking at this time or is not available",
                )
            self.slots.remove(start)
            end = start + timedelta(minutes=self.duration_minutes)
            data = {
                "id": next(self._ids),
                "uid": f"bk_{uuid.uuid4().hex[:20]}",
                "title": f"30 min between Host and {attendee['name']}",
                "description": "",
                "hosts": [{"id": 1, "name": "Host", "email": "host@example.com"}],
                "status": "accepted",
                "start": start.isoformat().replace("+00:00", ".000Z"),
                "end": end.isoformat().replace("+00:00", ".000Z"),
                "duration": self.duration_minutes,
                "eventTypeId": self.event_type_id,
                "eventType": {"id": self.event_type_id, "slug": "30min"},
                "meetingUrl": "https://app.cal.com/video/abc",
                "location": "https://app.cal.com/video/abc",
                "absentHost": False,
                "createdAt": datetime.now(UTC).isoformat(),
                "updatedAt": datetime.now(UTC).isoformat(),
                "metadata": body.get("metadata", {}),
                "attendees": [{**attendee, "language": "en", "absent": False}],
                "guests": [],
                "bookingFieldsResponses": body.get("bookingFieldsResponses", {}),
            }
            self.bookings.append(data)
            return JSONResponse({"status": "success", "data": data}, status_code=201)

        return app


@dataclass
class FakeCalendly:
    token: str
    event_type: str  # the event type URI
    slots: list[datetime]  # free start times (UTC)
    requests: list[dict[str, Any]] = field(default_factory=list)
    invitees: list[dict[str, Any]] = field(default_factory=list)

    @staticmethod
    def _error(status: int, title: str, message: str, parameter: str | None = None) -> JSONResponse:
        body: dict[str, Any] = {"title": title, "message": message}
        if parameter:
            body["details"] = [{"parameter": parameter, "message": message}]
        return JSONResponse(body, status_code=status)

    def _refused(self, entry: dict[str, Any]) -> JSONResponse | None:
        if entry["headers"].get("authorization") != f"Bearer {self.token}":
            return self._error(401, "Unauthenticated", "The access token is invalid")
        return None

    @property
    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/event_type_available_times")
        async def available(request: Request) -> JSONResponse:
            entry = await _record(self.requests, request)
            refused = self._refused(entry)
            if refused is not None:
                return refused
            query = entry["query"]
            for name in ("event_type", "start_time", "end_time"):
                if name not in query:
                    return self._error(400, "Invalid Argument", "is required", name)
            if query["event_type"] != self.event_type:
                return self._error(404, "Resource Not Found", "The event type was not found")
            start, end = _parse(query["start_time"]), _parse(query["end_time"])
            if start < datetime.now(UTC):
                return self._error(400, "Invalid Argument", "must be in the future", "start_time")
            if end <= start or end - start > timedelta(days=7):
                return self._error(
                    400, "Invalid Argument", "date range can be no greater than 1 week", "end_time"
                )
            collection = [
                {
                    "status": "available",
                    "invitees_remaining": 1,
                    "start_time": slot.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
                    "scheduling_url": f"https://calendly.com/host/30min/{slot.isoformat()}",
                }
                for slot in sorted(self.slots)
                if start <= slot <= end
            ]
            return JSONResponse({"collection": collection})

        @app.post("/invitees")
        async def create(request: Request) -> JSONResponse:
            entry = await _record(self.requests, request)
            refused = self._refused(entry)
            if refused is not None:
                return refused
            body = entry["json"] or {}
            invitee = body.get("invitee") or {}
            for name in ("event_type", "start_time"):
                if not body.get(name):
                    return self._error(400, "Invalid Argument", "is required", name)
            for name in ("email", "timezone"):
                if not invitee.get(name):
                    return self._error(400, "Invalid Argument", "is required", f"invitee.{name}")
            if not (invitee.get("name") or invitee.get("first_name")):
                return self._error(400, "Invalid Argument", "is required", "invitee.name")
            if body["event_type"] != self.event_type:
                return self._error(404, "Resource Not Found", "The event type was not found")
            start = _parse(body["start_time"])
            if start.utcoffset() != timedelta(0) or start not in self.slots:
                return self._error(
                    400, "Invalid Argument", "The selected time is not available", "start_time"
                )
            self.slots.remove(start)
            event = f"{CALENDLY_API}/scheduled_events/{uuid.uuid4()}"
            invitee_id = uuid.uuid4()
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
            resource = {
                "uri": f"{event}/invitees/{invitee_id}",
                "email": invitee["email"],
                "first_name": None,
                "last_name": None,
                "name": invitee.get("name"),
                "status": "active",
                "timezone": invitee["timezone"],
                "event": event,
                "created_at": now,
                "updated_at": now,
                "tracking": {},
                "text_reminder_number": invitee.get("text_reminder_number"),
                "rescheduled": False,
                "old_invitee": None,
                "new_invitee": None,
                "cancel_url": f"https://calendly.com/cancellations/{invitee_id}",
                "reschedule_url": f"https://calendly.com/reschedulings/{invitee_id}",
                "questions_and_answers": [],
                "payment": None,
                "no_show": None,
                "reconfirmation": None,
                "scheduling_method": None,
                "invitee_scheduled_by": None,
            }
            self.invitees.append(resource)
            return JSONResponse({"resource": resource}, status_code=201)

        return app
