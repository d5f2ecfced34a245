"""The Twilio carrier adapter, through the real twilio SDK, against the carrier simulator.

The simulator runs in-process on a free loopback port; a small receiver stands in for the
platform's webhooks and checks every X-Twilio-Signature with the SDK's RequestValidator.
Timings are scaled down; tests wait for conditions (bounded), never sleep and hope.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator

from talkturo.carrier.base import CarrierError, InvalidPhoneNumber, NumberNotAvailable
from talkturo.carrier.twilio import TwilioCarrier
from talkturo.domain.telephony import CallRequest, NumberSearch
from talkturo.local.carrier_sim import CarrierSimulator
from tests.asgi_server import served

pytestmark = pytest.mark.integration

TIME_SCALE = 0.01  # 1 simulated second = 10 ms
WAIT = 10.0


@dataclass
class Receiver:
    """The platform's webhooks as seen by the carrier: records requests, checks signatures."""

    auth_token: str
    twiml: str = '<?xml version="1.0" encoding="UTF-8"?><Response><Pause length="60"/></Response>'
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def app(self) -> Starlette:
        validator = RequestValidator(self.auth_token)

        async def hook(request: Request) -> Response:
            body = (await request.body()).decode()
            params = dict(parse_qsl(body, keep_blank_values=True))
            signature = request.headers.get("x-twilio-signature", "")
            self.requests.append(
                {
                    "path": request.url.path,
                    "params": params,
                    "valid": validator.validate(str(request.url), params, signature),
                    "content_type": request.headers.get("content-type", ""),
                }
            )
            if request.url.path == "/voice":
                return Response(self.twiml, media_type="application/xml")
            return Response(status_code=204)

        return Starlette(routes=[Route("/{name}", hook, methods=["POST", "GET"])])

    def of(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path]


@pytest.fixture
def simulator() -> Iterator[CarrierSimulator]:
    with CarrierSimulator(time_scale=TIME_SCALE) as sim:
        yield sim


@pytest.fixture
def carrier(simulator: CarrierSimulator) -> TwilioCarrier:
    return TwilioCarrier(simulator.account_sid, simulator.auth_token, api_base_url=simulator.url)


@pytest.fixture
def receiver(simulator: CarrierSimulator) -> Iterator[Receiver]:
    hooks = Receiver(simulator.auth_token)
    with served(hooks.app()) as url:
        hooks.url = url
        yield hooks


def _buy(carrier: TwilioCarrier, receiver: Receiver, country: str = "US") -> str:
    offered = carrier.search_numbers(NumberSearch(country=country, limit=1))[0]
    carrier.buy_number(
        offered.phone_number,
        voice_url=f"{receiver.url}/inbound",
        status_callback_url=f"{receiver.url}/number-status",
    )
    return offered.phone_number


def _call(carrier: TwilioCarrier, receiver: Receiver, caller_id: str, to: str, **extra: Any) -> str:
    placed = carrier.place_call(
        CallRequest(
            to=to,
            from_=caller_id,
            answer_url=f"{receiver.url}/voice",
            status_callback_url=f"{receiver.url}/status",
            amd_callback_url=f"{receiver.url}/amd",
            **extra,
        )
    )
    assert placed.carrier_sid.startswith("CA") and len(placed.carrier_sid) == 34
    assert placed.status == "queued"
    return placed.carrier_sid


def _wait_until(condition: Any, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# ---------------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("country", ["AE", "US", "CA", "DE", "AT", "CH"])
@pytest.mark.parametrize("kind", ["local", "toll_free"])
def test_search_offers_numbers_of_the_country_and_type(
    carrier: TwilioCarrier, country: str, kind: str
) -> None:
    found = carrier.search_numbers(NumberSearch(country=country, type=kind, limit=5))  # type: ignore[arg-type]

    assert len(found) == 5
    assert {n.country for n in found} == {country}
    assert {n.type for n in found} == {kind}
    assert all(n.phone_number.startswith("+") for n in found)
    assert len({n.phone_number for n in found}) == 5


def test_search_filters_by_area_code_contains_and_limit(carrier: TwilioCarrier) -> None:
    in_415 = carrier.search_numbers(NumberSearch(country="US", area_code="415", limit=3))
    assert len(in_415) == 3
    assert all(n.phone_number.startswith("+1415") for n in in_415)
    assert {n.locality for n in in_415} == {"San Francisco"}

    berlin = carrier.search_numbers(NumberSearch(country="DE", area_code="30", limit=4))
    assert berlin and all(n.phone_number.startswith("+4930") for n in berlin)

    digits = in_415[0].phone_number[-4:]
    containing = carrier.search_numbers(NumberSearch(country="US", contains=digits))
    assert containing and all(digits in n.phone_number for n in containing)

    both = carrier.search_numbers(
        NumberSearch(country="DE", area_code="30", contains=berlin[0].phone_number[-3:])
    )
    assert berlin[0].phone_number in [n.phone_number for n in both]
    assert all(n.phone_number.startswith("+4930") for n in both)

    assert carrier.search_numbers(NumberSearch(country="US", area_code="999")) == []


def test_buy_then_buying_again_is_refused_and_release_is_idempotent(
    carrier: TwilioCarrier, receiver: Receiver
) -> None:
    offered = carrier.search_numbers(NumberSearch(country="CH", limit=1))[0]

    bought = carrier.buy_number(
        offered.phone_number,
        voice_url=f"{receiver.url}/inbound",
        status_callback_url=f"{receiver.url}/status",
    )
    assert bought.carrier_sid.startswith("PN") and len(bought.carrier_sid) == 34
    assert bought.phone_number == offered.phone_number
    again = carrier.search_numbers(NumberSearch(country="CH", limit=50))
    assert offered.phone_number not in [n.phone_number for n in again]

    with pytest.raises(NumberNotAvailable) as refused:
        carrier.buy_number(
            offered.phone_number, voice_url=receiver.url, status_callback_url=receiver.url
        )
    assert refused.value.carrier_code == 21422

    carrier.release_number(bought.carrier_sid)
    carrier.release_number(bought.carrier_sid)  # already released: not an error


def test_the_bought_number_keeps_our_webhooks(
    carrier: TwilioCarrier, simulator: CarrierSimulator, receiver: Receiver
) -> None:
    number = _buy(carrier, receiver)
    resource = carrier._client.incoming_phone_numbers.list(phone_number=number)[0]
    assert resource.voice_url == f"{receiver.url}/inbound"
    assert resource.voice_method == "POST"
    assert resource.status_callback == f"{receiver.url}/number-status"
    assert resource.account_sid == simulator.account_sid


# ---------------------------------------------------------------------------------- calls
EXPECTED = {
    "human": (["initiated", "ringing", "in-progress", "completed"], "human"),
    "voicemail": (["initiated", "ringing", "in-progress", "completed"], "machine_start"),
    "no_answer": (["initiated", "ringing", "no-answer"], None),
    "busy": (["initiated", "busy"], None),
    "failed": (["initiated", "failed"], None),
}


@pytest.mark.parametrize("behaviour", list(EXPECTED))
def test_an_outbound_call_to_each_kind_of_callee(
    carrier: TwilioCarrier, simulator: CarrierSimulator, receiver: Receiver, behaviour: str
) -> None:
    caller_id = _buy(carrier, receiver)
    callee = "+14155550142" if behaviour != "voicemail" else "+493012345678"
    simulator.set_callee(callee, behaviour, ring_seconds=1, talk_seconds=3, amd_seconds=1)

    sid = _call(carrier, receiver, caller_id, callee, timeout_seconds=10)
    final = simulator.wait_for_call(sid, timeout=WAIT)

    statuses, answered_by = EXPECTED[behaviour]
    status_hooks = receiver.of("/status")
    assert all(r["valid"] for r in receiver.requests), receiver.requests
    assert [r["params"]["CallStatus"] for r in status_hooks] == statuses
    assert [r["params"]["SequenceNumber"] for r in status_hooks] == [
        str(i) for i in range(len(statuses))
    ]
    first = status_hooks[0]["params"]
    assert first["CallSid"] == sid
    assert first["AccountSid"] == simulator.account_sid
    assert (first["From"], first["To"]) == (caller_id, callee)
    assert (first["Caller"], first["Called"]) == (caller_id, callee)
    assert first["Direction"] == "outbound-api"
    assert first["ApiVersion"] == "2010-04-01"
    assert first["CallbackSource"] == "call-progress-events"
    assert first["Timestamp"]
    assert all(
        r["content_type"].startswith("application/x-www-form-urlencoded") for r in receiver.requests
    )
    last = status_hooks[-1]["params"]
    assert final["status"] == statuses[-1]

    amd = receiver.of("/amd")
    voice = receiver.of("/voice")
    if answered_by is None:
        assert amd == [] and voice == []
        assert last.get("CallDuration", "0") == "0"
    else:
        assert len(voice) == 1 and voice[0]["params"]["CallStatus"] == "in-progress"
        assert [r["params"]["AnsweredBy"] for r in amd] == [answered_by]
        assert amd[0]["params"]["CallSid"] == sid
        assert int(amd[0]["params"]["MachineDetectionDuration"]) == 1000
        assert int(last["CallDuration"]) >= 1
        assert "Duration" in last
        # The answer URL was fetched after "answered" and before the end.
        order = [r["path"] for r in receiver.requests]
        assert order.index("/voice") < len(order) - 1

    fetched = carrier._client.calls(sid).fetch()
    assert fetched.status == statuses[-1]
    assert fetched.direction == "outbound-api"
    assert fetched.answered_by == answered_by


def test_no_answer_rings_until_the_call_timeout(
    carrier: TwilioCarrier, simulator: CarrierSimulator, receiver: Receiver
) -> None:
    caller_id = _buy(carrier, receiver)
    simulator.set_callee("+14155550143", "no_answer")

    started = time.monotonic()
    sid = _call(carrier, receiver, caller_id, "+14155550143", timeout_seconds=5)
    simulator.wait_for_call(sid, timeout=WAIT)

    assert time.monotonic() - started >= 5 * TIME_SCALE * 0.9
    assert receiver.of("/status")[-1]["params"]["CallStatus"] == "no-answer"


def test_hang_up_ends_a_live_call_with_the_completed_callback(
    carrier: TwilioCarrier, simulator: CarrierSimulator, receiver: Receiver
) -> None:
    caller_id = _buy(carrier, receiver)
    simulator.set_callee("+14155550144", "human", ring_seconds=0, talk_seconds=10_000)
    sid = _call(carrier, receiver, caller_id, "+14155550144")
    _wait_until(lambda: any(r["params"].get("AnsweredBy") for r in receiver.of("/amd")))

    carrier.hang_up(sid)
    final = simulator.wait_for_call(sid, timeout=WAIT)

    assert final["status"] == "completed"
    assert receiver.of("/status")[-1]["params"]["CallStatus"] == "completed"
    carrier.hang_up(sid)  # already ended: not an error


def test_redirect_replaces_the_twiml_of_a_live_call(
    carrier: TwilioCarrier, simulator: CarrierSimulator, receiver: Receiver
) -> None:
    caller_id = _buy(carrier, receiver)
    simulator.set_callee("+14155550145", "human", ring_seconds=0, talk_seconds=10_000)
    sid = _call(carrier, receiver, caller_id, "+14155550145", machine_detection=False)
    _wait_until(lambda: len(receiver.of("/voice")) == 1)

    carrier.redirect_call(sid, "<Response><Say>One moment</Say><Hangup/></Response>")
    final = simulator.wait_for_call(sid, timeout=WAIT)

    assert final["documents"][-1] == "<Response><Say>One moment</Say><Hangup/></Response>"
    assert final["status"] == "completed"
    assert receiver.of("/amd") == []
    with pytest.raises(CarrierError) as ended:
        carrier.redirect_call(sid, "<Response/>")
    assert ended.value.carrier_code == 21220


# ---------------------------------------------------------------------------------- errors
def test_calls_to_invalid_numbers_or_from_numbers_not_held_are_refused(
    carrier: TwilioCarrier, receiver: Receiver
) -> None:
    caller_id = _buy(carrier, receiver)
    with pytest.raises(InvalidPhoneNumber) as bad_to:
        _call(carrier, receiver, caller_id, "+1555")
    assert bad_to.value.carrier_code == 21211
    assert bad_to.value.param == "to"

    with pytest.raises(InvalidPhoneNumber) as not_held:
        _call(carrier, receiver, "+14155550199", "+14155550142")
    assert not_held.value.carrier_code == 21210


def test_send_digits_other_than_keys_and_waits_are_twilios_21206(
    carrier: TwilioCarrier, receiver: Receiver
) -> None:
    caller_id = _buy(carrier, receiver)
    with pytest.raises(TwilioRestException) as refused:
        carrier._client.calls.create(
            to="+14155550142", from_=caller_id, url=f"{receiver.url}/voice", send_digits="ext9"
        )
    assert refused.value.code == 21206
    # Keys and `w` pass
    sid = _call(carrier, receiver, caller_id, "+14155550142", send_digits="ww9#")
    assert sid.startswith("CA")


def test_wrong_credentials_are_a_carrier_error_with_twilios_code(
    simulator: CarrierSimulator,
) -> None:
    wrong = TwilioCarrier(simulator.account_sid, "0" * 32, api_base_url=simulator.url)
    with pytest.raises(CarrierError) as refused:
        wrong.search_numbers(NumberSearch(country="US"))
    assert refused.value.carrier_code == 20003
    assert not refused.value.retryable

    answer = httpx.get(
        f"{simulator.url}/2010-04-01/Accounts/{simulator.account_sid}/Calls.json",
        auth=(simulator.account_sid, "wrong"),
    )
    assert answer.status_code == 401
    assert answer.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }


def test_an_unreachable_carrier_is_a_retryable_carrier_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    carrier = TwilioCarrier("AC" + "0" * 32, "token", api_base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(CarrierError) as failed:
        carrier.search_numbers(NumberSearch(country="US"))
    assert failed.value.retryable


def test_the_control_api_sets_callees_and_reports_calls(simulator: CarrierSimulator) -> None:
    auth = (simulator.account_sid, simulator.auth_token)
    put = httpx.put(
        f"{simulator.url}/_sim/callees/+14155550177",
        json={"behaviour": "busy", "ring_seconds": 1},
        auth=auth,
    )
    assert put.status_code == 200, put.text
    assert put.json()["behaviour"] == "busy"
    assert (
        httpx.get(f"{simulator.url}/_sim/callees/+14155550177", auth=auth).json()["behaviour"]
        == "busy"
    )
    bad = httpx.put(
        f"{simulator.url}/_sim/callees/+14155550177", json={"behaviour": "sings"}, auth=auth
    )
    assert bad.status_code == 400
    assert (
        httpx.put(
            f"{simulator.url}/_sim/callees/+14155550177", json={"behaviour": "busy"}
        ).status_code
        == 401
    )
    assert httpx.get(f"{simulator.url}/_sim/calls/CAnope", auth=auth).status_code == 404


_ = asyncio  # the simulator's loop is private; tests only use its thread-safe helpers
