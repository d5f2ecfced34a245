"""The Carrier protocol over Twilio's official SDK (twilio.rest.Client).

Every SDK call goes through `_calling`, which turns whatever the SDK raises (Twilio's REST errors,
transport failures) into CarrierError or one of its subclasses: no SDK exception leaves this
module. Twilio's error codes are mapped as Twilio documents them
(https://www.twilio.com/docs/api/errors).

The SDK is pointed at another base URL (the local carrier simulator) through its own extension
point, the `http_client` parameter of `Client`: `_BaseUrlHttpClient` rewrites
https://api.twilio.com to the configured URL and is otherwise Twilio's own HTTP client.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from talkturo.carrier.base import (
    CarrierError,
    InvalidPhoneNumber,
    NumberNotAvailable,
)
from talkturo.domain.telephony import (
    AvailableNumber,
    CallRequest,
    NumberSearch,
    PlacedCall,
    ProvisionedNumber,
)

logger = logging.getLogger("talkturo.carrier")

TWILIO_API_URL = "https://api.twilio.com"
# Countries where Twilio's AreaCode search parameter applies (North American numbering plan).
AREA_CODE_COUNTRIES = frozenset({"US", "CA"})
COUNTRY_CALLING_CODES = {"AE": "971", "US": "1", "CA": "1", "DE": "49", "AT": "43", "CH": "41"}
STATUS_CALLBACK_EVENTS = ["initiated", "ringing", "answered", "completed"]
REQUEST_TIMEOUT_SECONDS = 15.0

# Twilio error codes (https://www.twilio.com/docs/api/errors/<code>).
AUTHENTICATION_FAILED = 20003
NOT_FOUND = 20404
TOO_MANY_REQUESTS = 20429
INVALID_CALL_STATE = 21220  # a realtime operation on a call that is not in progress
NO_NUMBERS_FOUND = 21452
NUMBER_NOT_AVAILABLE = 21422
# The destination (or the number to buy) itself is refused.
INVALID_NUMBER_CODES = {
    21211: "to",  # invalid 'To' phone number
    21214: "to",  # 'To' phone number cannot be reached
    21217: "to",  # phone number does not appear to be valid
    21215: "to",  # geographic permission for the destination not enabled
    13224: "to",  # Twilio does not support calling this number
    21421: "phone_number",  # phone number is invalid (purchase)
    21451: "area_code",  # invalid area code
    21210: "from_",  # 'From' phone number not verified / not held
}
# What the platform says of each (the carrier's own wording stays in the log).
INVALID_NUMBER_MESSAGES = {
    "to": "The carrier cannot call this number.",
    "phone_number": "The carrier refuses this phone number.",
    "area_code": "The carrier does not know this area code.",
    "from_": "The carrier does not accept this caller ID.",
}
CARRIER_BUSY = "The carrier is not answering right now; try again in a moment."


class _BaseUrlHttpClient(TwilioHttpClient):
    """Twilio's HTTP client, sending https://api.twilio.com/… requests to `base_url` instead."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        if url.startswith(TWILIO_API_URL):
            url = self.base_url + url[len(TWILIO_API_URL) :]
        return super().request(method, url, *args, **kwargs)


def _as_rest_exception(exc: TwilioException) -> TwilioRestException | None:
    """List pages fail with TwilioException("Unable to fetch page", response): read the error."""
    response = exc.args[1] if len(exc.args) > 1 else None
    status = getattr(response, "status_code", None)
    if not isinstance(status, int):
        return None
    try:
        body = json.loads(getattr(response, "text", "") or "{}")
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = body.get("code")
    return TwilioRestException(
        status, "", str(body.get("message") or ""), code if isinstance(code, int) else status
    )


def carrier_error(exc: BaseException) -> CarrierError:
    """The domain's error for whatever the SDK raised: a message of our own, the carrier's in
    `detail` (logged, never answered)."""
    if isinstance(exc, TwilioException) and not isinstance(exc, TwilioRestException):
        exc = _as_rest_exception(exc) or exc
    if isinstance(exc, TwilioRestException):
        code = exc.code if isinstance(exc.code, int) else None
        detail = str(exc.msg or "")
        if code == NUMBER_NOT_AVAILABLE:
            return NumberNotAvailable(
                "That number is no longer available; search again and pick another.",
                carrier_code=code,
                param="phone_number",
                detail=detail,
            )
        if code in INVALID_NUMBER_CODES:
            param = INVALID_NUMBER_CODES[code]
            return InvalidPhoneNumber(
                INVALID_NUMBER_MESSAGES.get(param, "The carrier refuses this phone number."),
                carrier_code=code,
                param=param,
                detail=detail,
            )
        if code == AUTHENTICATION_FAILED or exc.status == 401:
            return CarrierError(
                "The carrier rejected the platform's credentials.", carrier_code=code, detail=detail
            )
        retryable = code == TOO_MANY_REQUESTS or exc.status == 429 or exc.status >= 500
        return CarrierError(
            CARRIER_BUSY if retryable else "The carrier refused the request.",
            carrier_code=code,
            retryable=retryable,
            detail=detail,
        )
    if isinstance(exc, TwilioException):
        return CarrierError(CARRIER_BUSY, retryable=True, detail=str(exc))
    # Transport failures (connection refused, timeouts…) from the HTTP library underneath.
    return CarrierError(CARRIER_BUSY, retryable=True, detail=f"unreachable: {type(exc).__name__}")


@contextmanager
def _calling(action: str) -> Iterator[None]:
    try:
        yield
    except CarrierError:
        raise
    except Exception as exc:
        error = carrier_error(exc)
        logger.warning(
            "carrier %s failed: %s (code %s): %s",
            action,
            type(exc).__name__,
            error.carrier_code,
            error.detail,
        )
        raise error from exc


_KEYPAD = {
    **dict.fromkeys("abc", "2"),
    **dict.fromkeys("def", "3"),
    **dict.fromkeys("ghi", "4"),
    **dict.fromkeys("jkl", "5"),
    **dict.fromkeys("mno", "6"),
    **dict.fromkeys("pqrs", "7"),
    **dict.fromkeys("tuv", "8"),
    **dict.fromkeys("wxyz", "9"),
}


def contains_pattern(pattern: str) -> re.Pattern[str]:
    """Twilio's `Contains` pattern as a regular expression over the E.164 digits (no '+').

    Letters stand for their keypad digit, `*` for any one digit; a leading `+` anchors the
    pattern at the start of the number (country code first), a trailing `$` at its end.
    """
    anchored_start = pattern.startswith("+")
    anchored_end = pattern.endswith("$")
    body = pattern.lstrip("+").rstrip("$")
    parts = []
    for char in body.lower():
        if char == "*":
            parts.append(r"\d")
        elif char == "%":
            parts.append(r"\d*")
        elif char.isdigit():
            parts.append(char)
        elif char in _KEYPAD:
            parts.append(_KEYPAD[char])
        else:
            parts.append(re.escape(char))
    expression = ("^" if anchored_start else "") + "".join(parts) + ("$" if anchored_end else "")
    return re.compile(expression)


class TwilioCarrier:
    """The Carrier protocol on Twilio. Thread-safe: the SDK client keeps no per-call state."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        api_base_url: str = "",
        timeout: float = REQUEST_TIMEOUT_SECONDS,
    ) -> None:
        http_client = (
            _BaseUrlHttpClient(api_base_url, timeout=timeout)
            if api_base_url
            else TwilioHttpClient(timeout=timeout)
        )
        self.account_sid = account_sid
        self.api_base_url = api_base_url
        self._client = Client(account_sid, auth_token, http_client=http_client)

    def __repr__(self) -> str:  # never the token
        target = self.api_base_url or TWILIO_API_URL
        return f"TwilioCarrier(account_sid={self.account_sid!r}, api={target!r})"

    # ------------------------------------------------------------------------------ numbers
    def search_numbers(self, search: NumberSearch) -> list[AvailableNumber]:
        filters: dict[str, Any] = {}
        local_filter: re.Pattern[str] | None = None
        if search.area_code:
            if search.country in AREA_CODE_COUNTRIES:
                filters["area_code"] = int(search.area_code)
            else:
                # Outside North America Twilio has no AreaCode filter: the documented way is a
                # Contains pattern anchored at the start of the number ("+" + country + area).
                filters["contains"] = f"+{COUNTRY_CALLING_CODES[search.country]}{search.area_code}"
        if search.contains:
            if "contains" in filters:
                local_filter = contains_pattern(search.contains)
            else:
                filters["contains"] = search.contains
        # With a second filter applied here, ask for more so that a page can still be filled.
        wanted = 50 if local_filter is not None else search.limit
        with _calling("number search"):
            country = self._client.available_phone_numbers(search.country)
            resource = country.local if search.type == "local" else country.toll_free
            try:
                found = resource.list(limit=wanted, page_size=wanted, **filters)
            except TwilioException as exc:
                error = carrier_error(exc)
                if error.carrier_code == NO_NUMBERS_FOUND:
                    return []
                raise error from exc
        numbers = []
        for item in found:
            if local_filter is not None and not local_filter.search(item.phone_number[1:]):
                continue
            capabilities = {k.lower(): bool(v) for k, v in (item.capabilities or {}).items()}
            numbers.append(
                AvailableNumber(
                    phone_number=item.phone_number,
                    friendly_name=item.friendly_name or item.phone_number,
                    country=item.iso_country or search.country,
                    type=search.type,
                    locality=item.locality or None,
                    region=item.region or None,
                    voice=capabilities.get("voice", True),
                    sms=capabilities.get("sms", False),
                )
            )
        return numbers[: search.limit]

    def buy_number(
        self, phone_number: str, *, voice_url: str, status_callback_url: str
    ) -> ProvisionedNumber:
        with _calling("number purchase"):
            bought = self._client.incoming_phone_numbers.create(
                phone_number=phone_number,
                voice_url=voice_url,
                voice_method="POST",
                status_callback=status_callback_url,
                status_callback_method="POST",
            )
        return ProvisionedNumber(carrier_sid=bought.sid, phone_number=bought.phone_number)

    def release_number(self, carrier_sid: str) -> None:
        with _calling("number release"):
            try:
                self._client.incoming_phone_numbers(carrier_sid).delete()
            except TwilioRestException as exc:
                if exc.status == 404 or exc.code == NOT_FOUND:
                    return  # already released
                raise

    # ------------------------------------------------------------------------------ calls
    def place_call(self, call: CallRequest) -> PlacedCall:
        options: dict[str, Any] = {}
        if call.machine_detection:
            options |= {
                "machine_detection": call.machine_detection_mode,
                "async_amd": "true",
                "async_amd_status_callback": call.amd_callback_url or call.status_callback_url,
                "async_amd_status_callback_method": "POST",
            }
        if call.send_digits:
            options["send_digits"] = call.send_digits
        # Url and Twiml are mutually exclusive at Twilio (CallRequest holds exactly one).
        if call.twiml is not None:
            options["twiml"] = call.twiml
        else:
            options |= {"url": call.answer_url, "method": "POST"}
        with _calling("call placement"):
            placed = self._client.calls.create(
                to=call.to,
                from_=call.from_,
                status_callback=call.status_callback_url,
                status_callback_event=STATUS_CALLBACK_EVENTS,
                status_callback_method="POST",
                timeout=call.timeout_seconds,
                **options,
            )
        return PlacedCall(carrier_sid=placed.sid, status=placed.status or "queued")

    def hang_up(self, carrier_sid: str) -> None:
        with _calling("hang-up"):
            try:
                self._client.calls(carrier_sid).update(status="completed")
            except TwilioRestException as exc:
                if exc.code == INVALID_CALL_STATE:
                    return  # the call had already ended
                raise

    def redirect_call(self, carrier_sid: str, twiml: str) -> None:
        with _calling("call redirect"):
            self._client.calls(carrier_sid).update(twiml=twiml)
