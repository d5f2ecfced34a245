"""The carrier simulator's HTTP side: Twilio's REST API (2010-04-01 subset) and a control API.

Twilio's REST subset, under /2010-04-01/Accounts/{AccountSid}/ with HTTP Basic auth (the account
SID and auth token the simulator was started with):

    GET    AvailablePhoneNumbers/{Country}/Local.json | TollFree.json   AreaCode, Contains, PageSize
    GET    IncomingPhoneNumbers.json          POST IncomingPhoneNumbers.json (buy)
    GET    IncomingPhoneNumbers/{Sid}.json    POST (update)   DELETE (release, 204)
    GET    Calls.json                         POST Calls.json (place an outbound call: Url or
                                              inline Twiml)
    GET    Calls/{Sid}.json                   POST (Status=completed|canceled, Twiml, Url)

Errors answer with Twilio's body {"code", "message", "more_info", "status"}.

The control API (same credentials) lets tests and the CLI shape the simulated network:

    PUT    /_sim/callees/{E164}   {"behaviour": "human"|"no_answer"|"busy"|"failed"|"voicemail",
                                   "ring_seconds": 2, "talk_seconds": 20, "amd_seconds": 1.5,
                                   "script": {…}}  (talk_seconds: the script's max_seconds
                                   when not given, 20 without a script)
    GET    /_sim/callees/{E164}   DELETE /_sim/callees/{E164} (back to the default: human)
    POST   /_sim/calls            {"from": E164, "to": a number bought here, "script": {…}}
                                  a simulated caller dials the number (201, the call)
    GET    /_sim/calls/{Sid}?wait=5   the call, its callbacks and TwiML, what the simulated party
                                      (caller or callee) said and heard (`audio=1`: the heard
                                      audio, base64 mu-law); with `wait`, answers once the call
                                      has ended and every callback was delivered; `dials`:
                                      its <Dial>s (number or conference, outcome, seconds)
    GET    /_sim/activity         the outbound calls placed through the REST API, each with when
                                  it was placed and ended (epoch seconds, to the millisecond),
                                  how many are live now and the most ever live at once
    DELETE /_sim/activity         forget the calls that ended (the live ones stay counted) and
                                  start the maximum again from those
    GET    /_sim/health           (no credentials)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

import phonenumbers
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from talkturo.carrier.twilio import contains_pattern
from talkturo.local.carrier_sim.network import (
    API_VERSION,
    FINAL_STATUSES,
    Callee,
    Network,
    SimCall,
    new_sid,
    now,
    parse_behaviour,
    rfc2822,
)
from talkturo.local.carrier_sim.twiml import SEND_DIGITS
from talkturo.simcaller.scripts import ScriptError, parse_script

Handler = Callable[[Request], Awaitable[Response]]
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50
MAX_WAIT_SECONDS = 60.0
DEFAULT_CALLER_ID = "+14155552671"  # who calls when the dialer does not say
MAX_TWIML_CHARS = 4000  # inline Twiml (Twilio error 32018 above it)
PREFIX = f"/{API_VERSION}/Accounts/{{account_sid}}"


class TwilioError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
    )


def _not_found(request: Request) -> TwilioError:
    return TwilioError(404, 20404, f"The requested resource {request.url.path} was not found")


async def _form(request: Request) -> dict[str, list[str]]:
    body = (await request.body()).decode("utf-8", errors="replace")
    form: dict[str, list[str]] = {}
    for name, value in parse_qsl(body, keep_blank_values=True):
        form.setdefault(name, []).append(value)
    return form


def _one(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[-1] if values else None


def _check_twiml_size(twiml: str | None) -> None:
    if twiml is not None and len(twiml) > MAX_TWIML_CHARS:
        raise TwilioError(
            400, 32018, f"Twiml size exceeded maximum allowed value of {MAX_TWIML_CHARS} characters"
        )


class CarrierApp:
    def __init__(self, network: Network, auth_token: str) -> None:
        self.network = network
        self._auth_token = auth_token
        self.app = Starlette(routes=self._routes(), exception_handlers={})

    # ------------------------------------------------------------------------------ plumbing
    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user, self.network.account_sid) and hmac.compare_digest(
            password, self._auth_token
        )

    def _guard(self, handler: Handler, *, account: bool = True) -> Handler:
        async def guarded(request: Request) -> Response:
            if not self._authorized(request):
                return error_response(401, 20003, "Authenticate")
            if account and request.path_params.get("account_sid") != self.network.account_sid:
                return error_response(
                    404, 20404, f"The requested resource {request.url.path} was not found"
                )
            try:
                return await handler(request)
            except TwilioError as exc:
                return error_response(exc.status, exc.code, exc.message)

        return guarded

    def _routes(self) -> list[Route]:
        g = self._guard
        numbers = f"{PREFIX}/IncomingPhoneNumbers"
        return [
            Route("/_sim/health", self.health, methods=["GET"]),
            Route(
                "/_sim/callees/{number}",
                g(self.callee, account=False),
                methods=["GET", "PUT", "DELETE"],
            ),
            Route("/_sim/calls", g(self.dial, account=False), methods=["POST"]),
            Route("/_sim/calls/{sid}", g(self.sim_call, account=False), methods=["GET"]),
            Route("/_sim/activity", g(self.activity, account=False), methods=["GET", "DELETE"]),
            Route(
                PREFIX + "/AvailablePhoneNumbers/{country}/{kind}.json",
                g(self.available),
                methods=["GET"],
            ),
            Route(numbers + ".json", g(self.numbers_list), methods=["GET", "POST"]),
            Route(numbers + "/{sid}.json", g(self.number), methods=["GET", "POST", "DELETE"]),
            Route(PREFIX + "/Calls.json", g(self.calls_list), methods=["GET", "POST"]),
            Route(PREFIX + "/Calls/{sid}.json", g(self.call), methods=["GET", "POST"]),
        ]

    def _uri(self, tail: str) -> str:
        return f"/{API_VERSION}/Accounts/{self.network.account_sid}/{tail}"

    def _page(
        self, request: Request, key: str, items: list[dict[str, Any]], path: str
    ) -> JSONResponse:
        params = request.query_params
        try:
            size = min(MAX_PAGE_SIZE, max(1, int(params.get("PageSize", DEFAULT_PAGE_SIZE))))
            page = max(0, int(params.get("Page", 0)))
        except ValueError:
            raise TwilioError(400, 20001, "Invalid paging parameters") from None
        start = page * size
        chunk = items[start : start + size]
        kept = {k: v for k, v in params.items() if k not in ("Page", "PageSize", "PageToken")}

        def page_uri(number: int) -> str:
            return f"{path}?{urlencode({**kept, 'PageSize': size, 'Page': number})}"

        more = start + size < len(items)
        return JSONResponse(
            {
                key: chunk,
                "end": start + max(0, len(chunk) - 1),
                "first_page_uri": page_uri(0),
                "next_page_uri": (page_uri(page + 1) + f"&PageToken=PA{page + 1}")
                if more
                else None,
                "page": page,
                "page_size": size,
                "previous_page_uri": page_uri(page - 1) if page > 0 else None,
                "start": start,
                "uri": page_uri(page),
            }
        )

    # ------------------------------------------------------------------------------ control
    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def callee(self, request: Request) -> Response:
        number = request.path_params["number"]
        if request.method == "DELETE":
            self.network.callees.pop(number, None)
            return Response(status_code=204)
        if request.method == "PUT":
            try:
                body = json.loads(await request.body() or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("a JSON object is expected")
                current = Callee()
                script = parse_script(body["script"]) if body.get("script") is not None else None
                behaviour = body.get("behaviour", script.behaviour if script else "human")
                ring = script.ring_seconds if script else current.ring_seconds
                talk = body.get("talk_seconds")
                callee = Callee(
                    behaviour=parse_behaviour(behaviour),
                    ring_seconds=float(body.get("ring_seconds", ring)),
                    talk_seconds=float(talk) if talk is not None else None,
                    amd_seconds=float(body.get("amd_seconds", current.amd_seconds)),
                    script=script,
                )
                if min(callee.ring_seconds, callee.limit, callee.amd_seconds) < 0:
                    raise ValueError("times cannot be negative")
            except (ValueError, TypeError, ScriptError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            self.network.callees[number] = callee
        return JSONResponse({"number": number, **self.network.callee(number).as_dict()})

    async def activity(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.network.activity.clear()
            return Response(status_code=204)
        return JSONResponse(self.network.activity.as_dict())

    async def sim_call(self, request: Request) -> Response:
        call = self.network.calls.get(request.path_params["sid"])
        if call is None:
            return JSONResponse({"error": "no such call"}, status_code=404)
        wait = request.query_params.get("wait")
        if wait:
            with contextlib.suppress(TimeoutError, ValueError):
                await asyncio.wait_for(call.done.wait(), min(float(wait), MAX_WAIT_SECONDS))
        with_audio = request.query_params.get("audio") in ("1", "true")
        return JSONResponse(self.call_report(call, with_audio=with_audio))

    def call_report(self, call: SimCall, *, with_audio: bool = False) -> dict[str, Any]:
        return {
            **self._call_resource(call),
            "done": call.done.is_set(),
            "error_code": call.error_code,
            "error_message": call.error_message,
            "events": call.events,
            "documents": call.documents,
            "dials": call.dials,
            "party": call.record.as_dict(with_audio=with_audio),
        }

    async def dial(self, request: Request) -> Response:
        """A simulated caller dials a number bought in the simulator."""
        try:
            body = json.loads(await request.body() or b"{}")
            if not isinstance(body, dict):
                raise ValueError("a JSON object is expected")
            to, from_ = body.get("to"), body.get("from") or DEFAULT_CALLER_ID
            if not isinstance(to, str) or not to:
                raise ValueError("`to` (a number bought in the simulator) is required")
            for value in (to, from_):
                try:
                    valid = phonenumbers.is_valid_number(phonenumbers.parse(value, None))
                except phonenumbers.NumberParseException:
                    valid = False
                if not valid:
                    raise ValueError(f"{value!r} is not a valid E.164 number")
            script = parse_script(body["script"]) if body.get("script") is not None else None
        except (ValueError, TypeError, ScriptError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        try:
            call = self.network.start_inbound(from_, to, script)
        except LookupError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        return JSONResponse(self.call_report(call), status_code=201)

    # ------------------------------------------------------------------------------ numbers
    async def available(self, request: Request) -> Response:
        country = request.path_params["country"].upper()
        kind = {"Local": "local", "TollFree": "toll_free"}.get(request.path_params["kind"])
        if kind is None:
            raise _not_found(request)
        params = request.query_params
        area_code = params.get("AreaCode")
        contains = params.get("Contains")
        if area_code is not None and (
            country not in ("US", "CA") or not area_code.isdigit() or len(area_code) != 3
        ):
            raise TwilioError(400, 21451, f"Invalid area code: {area_code}")
        matcher = None
        if contains:
            if len(contains.strip("+$*%")) < 1:
                raise TwilioError(400, 21422, "Contains pattern is invalid")
            matcher = contains_pattern(contains)
        try:
            size = min(50, max(1, int(params.get("PageSize", 50))))
        except ValueError:
            raise TwilioError(400, 20001, "Invalid PageSize") from None
        found = []
        for offered in self.network.available.values():
            if offered.iso_country != country or offered.type != kind:
                continue
            if area_code is not None and offered.area_code != area_code:
                continue
            if matcher is not None and not matcher.search(offered.phone_number[1:]):
                continue
            found.append(self._offered(offered))
            if len(found) >= size:
                break
        path = request.url.path
        query = urlencode({k: v for k, v in params.items()})
        uri = f"{path}?{query}" if query else path
        return JSONResponse(
            {
                "available_phone_numbers": found,
                "end": max(0, len(found) - 1),
                "first_page_uri": uri,
                "next_page_uri": None,
                "page": 0,
                "page_size": size,
                "previous_page_uri": None,
                "start": 0,
                "uri": uri,
            }
        )

    def _offered(self, offered: Any) -> dict[str, Any]:
        return {
            "friendly_name": offered.friendly_name,
            "phone_number": offered.phone_number,
            "lata": offered.lata,
            "locality": offered.locality,
            "rate_center": offered.rate_center,
            "latitude": f"{offered.latitude:.6f}" if offered.latitude is not None else None,
            "longitude": f"{offered.longitude:.6f}" if offered.longitude is not None else None,
            "region": offered.region,
            "postal_code": offered.postal_code,
            "iso_country": offered.iso_country,
            "address_requirements": "none",
            "beta": False,
            "capabilities": {"voice": True, "SMS": offered.type == "local", "MMS": False},
        }

    async def numbers_list(self, request: Request) -> Response:
        if request.method == "GET":
            wanted = request.query_params.get("PhoneNumber")
            items = [
                n
                for n in self.network.numbers.values()
                if not wanted or n["phone_number"] == wanted
            ]
            return self._page(request, "incoming_phone_numbers", items, request.url.path)
        form = await _form(request)
        phone_number = _one(form, "PhoneNumber")
        area_code = _one(form, "AreaCode")
        if not phone_number and area_code:
            phone_number = next(
                (
                    n.phone_number
                    for n in self.network.available.values()
                    if n.area_code == area_code and n.iso_country in ("US", "CA")
                ),
                None,
            )
            if phone_number is None:
                raise TwilioError(400, 21452, f"No phone numbers found in area code {area_code}")
        if not phone_number:
            raise TwilioError(400, 21421, "PhoneNumber is required.")
        try:
            valid = phonenumbers.is_valid_number(phonenumbers.parse(phone_number, None))
        except phonenumbers.NumberParseException:
            valid = False
        if not valid:
            raise TwilioError(400, 21421, f"PhoneNumber {phone_number} is invalid.")
        offered = self.network.available.pop(phone_number, None)
        if offered is None:
            raise TwilioError(400, 21422, f"PhoneNumber {phone_number} is not available.")
        sid = new_sid("PN")
        created = rfc2822(now())
        number: dict[str, Any] = {
            "account_sid": self.network.account_sid,
            "address_requirements": "none",
            "address_sid": None,
            "api_version": API_VERSION,
            "beta": False,
            "bundle_sid": None,
            "capabilities": {
                "fax": False,
                "mms": False,
                "sms": offered.type == "local",
                "voice": True,
            },
            "date_created": created,
            "date_updated": created,
            "emergency_address_sid": None,
            "emergency_address_status": "unregistered",
            "emergency_status": "Inactive",
            "friendly_name": _one(form, "FriendlyName") or offered.friendly_name,
            "identity_sid": None,
            "origin": "twilio",
            "phone_number": offered.phone_number,
            "sid": sid,
            "sms_application_sid": None,
            "sms_fallback_method": "POST",
            "sms_fallback_url": None,
            "sms_method": "POST",
            "sms_url": None,
            "status": "in-use",
            "status_callback": None,
            "status_callback_method": "POST",
            "subresource_uris": {
                "assigned_add_ons": self._uri(f"IncomingPhoneNumbers/{sid}/AssignedAddOns.json")
            },
            "trunk_sid": None,
            "uri": self._uri(f"IncomingPhoneNumbers/{sid}.json"),
            "voice_application_sid": None,
            "voice_caller_id_lookup": False,
            "voice_fallback_method": "POST",
            "voice_fallback_url": None,
            "voice_method": "POST",
            "voice_receive_mode": "voice",
            "voice_url": None,
        }
        self._apply_number_update(number, form)
        self.network.numbers[sid] = number
        return JSONResponse(number, status_code=201)

    @staticmethod
    def _apply_number_update(number: dict[str, Any], form: dict[str, list[str]]) -> None:
        fields = {
            "VoiceUrl": "voice_url",
            "VoiceMethod": "voice_method",
            "VoiceFallbackUrl": "voice_fallback_url",
            "VoiceFallbackMethod": "voice_fallback_method",
            "StatusCallback": "status_callback",
            "StatusCallbackMethod": "status_callback_method",
            "FriendlyName": "friendly_name",
            "SmsUrl": "sms_url",
            "SmsMethod": "sms_method",
        }
        for param, key in fields.items():
            value = _one(form, param)
            if value is not None:
                number[key] = value
        number["date_updated"] = rfc2822(now())

    async def number(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        number = self.network.numbers.get(sid)
        if number is None:
            raise _not_found(request)
        if request.method == "DELETE":
            del self.network.numbers[sid]
            return Response(status_code=204)
        if request.method == "POST":
            self._apply_number_update(number, await _form(request))
        return JSONResponse(number)

    # ------------------------------------------------------------------------------ calls
    def _call_resource(self, call: SimCall) -> dict[str, Any]:
        def formatted(number: str) -> str:
            try:
                parsed = phonenumbers.parse(number, None)
            except phonenumbers.NumberParseException:
                return number
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)

        base = f"Calls/{call.sid}"
        return {
            "account_sid": call.account_sid,
            "annotation": None,
            "answered_by": call.answered_by,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": rfc2822(call.date_created),
            "date_updated": rfc2822(call.date_updated),
            "direction": call.direction,
            "duration": str(call.duration) if call.duration is not None else None,
            "end_time": rfc2822(call.end_time),
            "forwarded_from": None,
            "from": call.from_,
            "from_formatted": formatted(call.from_),
            "group_sid": None,
            "parent_call_sid": call.parent_call_sid,
            "phone_number_sid": call.phone_number_sid,
            "price": None,
            "price_unit": "USD",
            "queue_time": "0",
            "sid": call.sid,
            "start_time": rfc2822(call.start_time),
            "status": call.status,
            "subresource_uris": {
                "notifications": self._uri(f"{base}/Notifications.json"),
                "recordings": self._uri(f"{base}/Recordings.json"),
                "streams": self._uri(f"{base}/Streams.json"),
                "events": self._uri(f"{base}/Events.json"),
            },
            "to": call.to,
            "to_formatted": formatted(call.to),
            "trunk_sid": None,
            "uri": self._uri(f"{base}.json"),
        }

    async def calls_list(self, request: Request) -> Response:
        if request.method == "GET":
            q = request.query_params
            items = [
                self._call_resource(c)
                for c in reversed(self.network.calls.values())
                if (not q.get("To") or c.to == q["To"])
                and (not q.get("From") or c.from_ == q["From"])
                and (not q.get("Status") or c.status == q["Status"])
            ]
            return self._page(request, "calls", items, request.url.path)
        form = await _form(request)
        to, from_ = _one(form, "To"), _one(form, "From")
        url, twiml = _one(form, "Url"), _one(form, "Twiml")
        if not to:
            raise TwilioError(400, 21201, "No 'To' number is specified")
        if not from_:
            raise TwilioError(400, 21213, "No 'From' number is specified")
        if not url and not twiml:
            raise TwilioError(400, 21205, "Url parameter is required.")
        _check_twiml_size(twiml)
        try:
            parsed = phonenumbers.parse(to, None)
            valid = phonenumbers.is_valid_number(parsed)
        except phonenumbers.NumberParseException:
            valid = False
        if not valid:
            raise TwilioError(400, 21211, f"Invalid 'To' Phone Number: {to}")
        held = next((n for n in self.network.numbers.values() if n["phone_number"] == from_), None)
        if held is None:
            raise TwilioError(
                400,
                21210,
                f"The source phone number provided, {from_}, is not yet verified for your "
                "account. You may only make calls from phone numbers that you've verified or "
                "purchased from Twilio.",
            )
        send_digits = _one(form, "SendDigits") or None
        if send_digits is not None and not SEND_DIGITS.fullmatch(send_digits):
            raise TwilioError(400, 21206, f"Invalid SendDigits: {send_digits}")
        try:
            timeout = int(_one(form, "Timeout") or 60)
        except ValueError:
            raise TwilioError(400, 21216, "Timeout must be an integer") from None
        events = {e.lower() for e in form.get("StatusCallbackEvent", [])}
        for event in list(events):
            events.update(event.split())
        call = SimCall(
            sid=new_sid("CA"),
            account_sid=self.network.account_sid,
            to=to,
            from_=from_,
            url=url,
            method=(_one(form, "Method") or "POST").upper(),
            twiml=twiml,
            status_callback=_one(form, "StatusCallback"),
            status_callback_method=(_one(form, "StatusCallbackMethod") or "POST").upper(),
            status_callback_events=events,
            timeout=max(1, min(600, timeout)),
            machine_detection=_one(form, "MachineDetection"),
            async_amd=(_one(form, "AsyncAmd") or "false").lower() == "true",
            async_amd_callback=_one(form, "AsyncAmdStatusCallback"),
            async_amd_callback_method=(_one(form, "AsyncAmdStatusCallbackMethod") or "POST"),
            phone_number_sid=held["sid"],
            send_digits=send_digits,
        )
        self.network.start(call)
        return JSONResponse(self._call_resource(call), status_code=201)

    async def call(self, request: Request) -> Response:
        call = self.network.calls.get(request.path_params["sid"])
        if call is None:
            raise _not_found(request)
        if request.method == "POST":
            form = await _form(request)
            status = _one(form, "Status")
            twiml, url = _one(form, "Twiml"), _one(form, "Url")
            if status is not None and status not in ("completed", "canceled"):
                raise TwilioError(400, 20001, f"Invalid Status: {status}")
            if status == "completed" and call.status not in FINAL_STATUSES:
                ended = "completed" if call.status == "in-progress" else "canceled"
                self.network.end_now(call, ended)
            elif status == "canceled" and call.status in ("queued", "ringing"):
                self.network.end_now(call, "canceled")
            elif status is None and (twiml or url):
                _check_twiml_size(twiml)
                if call.status != "in-progress":
                    raise TwilioError(400, 21220, "Call is not in-progress. Cannot redirect.")
                method = (_one(form, "Method") or "POST").upper()
                await self.network.redirect(call, twiml, url, method)
        return JSONResponse(self._call_resource(call))
