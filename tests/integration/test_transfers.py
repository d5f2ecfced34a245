"""Call transfers end to end: the carrier simulator (the real Twilio adapter against it), the
API and the carrier webhooks served on loopback, and a stand-in for the voice service that
starts the transfer the way the voice service does (talkturo.services.transfers, from a thread)
and records the claims of every media stream it is given.

Waits are bounded (the simulator's wait_for_call, events with timeouts), never sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import threading
import wave
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from twilio.request_validator import RequestValidator

from talkturo import config, tokens
from talkturo.api.app import create_app
from talkturo.carrier.base import CarrierError
from talkturo.carrier.factory import set_carrier
from talkturo.carrier.twilio import TwilioCarrier
from talkturo.domain.assistant_tools import TransferDestination
from talkturo.domain.calls import CallEvent, CallRecord, apply, transfer_moved, transfer_started
from talkturo.domain.common import utcnow
from talkturo.domain.dialing import Destination
from talkturo.errors import InvalidRequest
from talkturo.local.carrier_sim import CarrierSimulator
from talkturo.local.template import Stack
from talkturo.services import calls, transfers
from talkturo.simcaller.scripts import load_script
from talkturo.store import calls as call_store
from talkturo.webhooks.asgi import create_webhook_app, with_carrier_webhooks
from tests.asgi_server import served
from tests.conftest import Tenant
from tests.integration import calls_setup, carrier_events
from tests.integration.lambda_worker import LambdaContext

pytestmark = pytest.mark.integration

SECRET = "voice-secret"
AGENT = "+14155550199"  # the transfer destination (a simulated callee)
CALLER = "+12025550143"
WAIT_SECONDS = 20.0
BRIEF = "Ada wants a refund for order forty two."
# The caller: one long step on the assistant's stream (the transfer cuts it), then silence.
CALLER_SCRIPT = load_script("[wait_seconds: 600]")
AGENT_SCRIPT = load_script(
    '{max_seconds: 300, steps: [{say: "Sales desk, Sam speaking."}, {wait_seconds: 1}, hang_up]}'
)


@dataclass
class VoiceService:
    """The voice service's part: each stream's token claims; the first stream of a call starts
    the transfer (`transfer(claims)`); a resumed stream, or one whose transfer raised, is closed
    at once (the end of the TwiML: the call ends)."""

    transfer: Callable[[dict[str, Any]], None] | None = None
    streams: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    transfer_error: BaseException | None = None
    resumed: threading.Event = field(default_factory=threading.Event)

    async def media(self, websocket: WebSocket) -> None:
        await websocket.accept()
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                message = json.loads(await websocket.receive_text())
                if message["event"] == "start":
                    break
                if message["event"] == "stop":
                    return
            token = message["start"]["customParameters"].get("token", "")
            try:
                claims = tokens.verify(token, SECRET)
            except tokens.InvalidToken as error:
                self.errors.append(f"bad token: {error}")
                await websocket.close()
                return
            self.streams.append(claims)
            if claims.get("resume"):
                self.resumed.set()
                await websocket.close()
                return
            if self.transfer is not None:
                try:
                    await asyncio.to_thread(self.transfer, claims)
                except Exception as error:
                    # The voice service would tell the caller and go on; here the call ends.
                    self.transfer_error = error
                    await websocket.close()
                    return
            while json.loads(await websocket.receive_text())["event"] != "stop":
                pass


@dataclass
class Platform:
    sim: CarrierSimulator
    voice: VoiceService
    api: str


@pytest.fixture
def platform(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    voice = VoiceService()
    voice_app = Starlette(routes=[WebSocketRoute("/media", voice.media)])
    api_app = with_carrier_webhooks(create_app())
    with (
        served(voice_app) as voice_url,
        served(api_app) as api,
        CarrierSimulator(time_scale=0.01, tts="synthetic") as sim,
    ):
        monkeypatch.setenv("VOICE_SERVICE_URL", voice_url.replace("http://", "ws://", 1))
        monkeypatch.setenv("PUBLIC_BASE_URL", api)
        monkeypatch.setenv("TWILIO_ACCOUNT_SID", sim.account_sid)
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", sim.auth_token)
        monkeypatch.setenv("VOICE_TOKEN_SECRET", SECRET)
        config.get_settings.cache_clear()
        set_carrier(TwilioCarrier(sim.account_sid, sim.auth_token, api_base_url=sim.url))
        try:
            yield Platform(sim, voice, api)
        finally:
            set_carrier(None)
            config.get_settings.cache_clear()


def _line(client: TestClient, stack: Stack, tenant: Tenant) -> calls_setup.Line:
    offer = client.get("/v1/phone-numbers/available?country=US&limit=1", headers=tenant.headers)
    return calls_setup.line(client, stack, tenant, offer.json()["data"][0]["phone_number"])


def _record(claims: dict[str, Any]) -> CallRecord:
    return calls.get_record(claims["account"], claims["call"])


def _cold(name: str, number: str = AGENT) -> Callable[[dict[str, Any]], None]:
    def start(claims: dict[str, Any]) -> None:
        destination = TransferDestination(name=name, number=number)
        transfers.start_cold(claims["account"], _record(claims), destination, ring_tone=True)

    return start


def _warm(name: str, number: str = AGENT) -> Callable[[dict[str, Any]], None]:
    def start(claims: dict[str, Any]) -> None:
        destination = TransferDestination(name=name, number=number)
        transfers.start_warm(
            claims["account"], _record(claims), destination, brief=BRIEF, ring_tone=True
        )

    return start


def _call_of(client: TestClient, tenant: Tenant) -> dict[str, Any]:
    listed = client.get("/v1/calls", headers=tenant.headers).json()["data"]
    assert len(listed) == 1, listed
    return dict(listed[0])


def _sim_call(platform: Platform, sid: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{platform.sim.url}/_sim/calls/{sid}?wait=10",
        auth=(platform.sim.account_sid, platform.sim.auth_token),
        timeout=15,
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _delivered(final: dict[str, Any]) -> None:
    """Every webhook the simulator sent was answered 2xx."""
    sent = [e for e in final["events"] if e["kind"] not in ("media",)]
    assert sent and all(200 <= (e["response_status"] or 0) < 300 for e in sent), sent


def _ended_call(client: TestClient, tenant: Tenant) -> dict[str, Any]:
    """The call record once the carrier's final callback has been applied."""
    got = _call_of(client, tenant)
    assert got["status"] == "ended", got
    return got


def _query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


# --------------------------------------------------------------------------------- cold


def test_a_cold_transfer_bridges_the_caller_and_the_call_ends_transferred(
    client: TestClient, stack: Stack, tenant: Tenant, platform: Platform
) -> None:
    line = _line(client, stack, tenant)
    platform.sim.set_callee(AGENT, "human", ring_seconds=1, script=AGENT_SCRIPT)
    platform.voice.transfer = _cold("Sales desk")
    # When a caller reaches the assistant, which transfers them cold
    sid = platform.sim.dial(line.phone_number, from_=CALLER, script=CALLER_SCRIPT)
    final = platform.sim.wait_for_call(sid, timeout=WAIT_SECONDS)
    assert platform.voice.transfer_error is None and not platform.voice.errors
    # Then the carrier ran the <Dial> the transfer asked for
    call = _ended_call(client, tenant)
    dial = ET.fromstring(final["documents"][1]).find("./Dial")
    assert dial is not None
    assert _query(dial.get("action", "")) == {"call": call["id"], "account": tenant.account_id}
    assert dial.get("action", "").startswith(f"{platform.api}/carrier/transfer?")
    assert dial.get("method") == "POST" and dial.get("timeout") == "20"
    assert dial.get("callerId") == line.phone_number  # the platform's number, not the caller's
    assert dial.get("answerOnBridge") == "true" and dial.get("ringTone") == "us"
    assert [n.text for n in dial.findall("./Number")] == [AGENT]
    # And the caller was bridged to the destination, who spoke to them, then hung up
    (bridge,) = final["dials"]
    assert bridge["to"] == AGENT and bridge["outcome"] == "completed"
    assert bridge["bridged_seconds"] > 1 and bridge["ended_by"] == "callee"
    heard = [(e["from"], e["text"]) for e in final["party"]["heard"] if e["kind"] == "voice"]
    assert heard == [(AGENT, "Sales desk, Sam speaking.")]
    leg = _sim_call(platform, bridge["dial_call_sid"])
    assert leg["parent_call_sid"] == sid and leg["from"] == line.phone_number
    # The <Dial> action said completed; its answer hung up
    action = [e for e in final["events"] if e["kind"] == "action"]
    assert [e["params"]["DialCallStatus"] for e in action] == ["completed"]
    assert "<Hangup" in final["documents"][-1]
    _delivered(final)
    # And the call ended transferred, to the destination's name
    assert call["ended_reason"] == "transferred" and call["outcome"] == "answered"
    assert call["transferred_to"] == "Sales desk" and call["transfer_status"] == "completed"
    assert [s.get("resume") for s in platform.voice.streams] == [None]  # never came back


def test_a_cold_transfer_to_a_busy_line_comes_back_to_the_voice_service(
    client: TestClient, stack: Stack, tenant: Tenant, platform: Platform
) -> None:
    line = _line(client, stack, tenant)
    platform.sim.set_callee(AGENT, "busy", ring_seconds=1)
    platform.voice.transfer = _cold("Sales desk")
    sid = platform.sim.dial(line.phone_number, from_=CALLER, script=CALLER_SCRIPT)
    final = platform.sim.wait_for_call(sid, timeout=WAIT_SECONDS)
    assert platform.voice.resumed.is_set()
    # The <Dial> action (busy) answered with a stream back to the voice service…
    action = [e for e in final["events"] if e["kind"] == "action"]
    assert [e["params"]["DialCallStatus"] for e in action] == ["busy"]
    back = ET.fromstring(final["documents"][2])
    parameter = back.find("./Connect/Stream/Parameter")
    assert parameter is not None and parameter.get("name") == "token"
    claims = tokens.verify(str(parameter.get("value")), SECRET)
    call = _ended_call(client, tenant)
    # …whose token names the call and says the transfer failed, and why
    assert claims["call"] == call["id"] and claims["account"] == tenant.account_id
    assert claims["resume"] == "transfer_failed" and claims["transfer_status"] == "busy"
    assert claims["transfer_to"] == "Sales desk"
    assert [s.get("resume") for s in platform.voice.streams] == [None, "transfer_failed"]
    assert final["dials"][0]["outcome"] == "busy"
    _delivered(final)
    # The call went on with the assistant (then the caller hung up): not transferred
    assert call["ended_reason"] == "caller_hung_up" and call["transfer_status"] == "busy"
    assert call["transferred_to"] == "Sales desk"


# --------------------------------------------------------------------------------- warm


def _leg_sid(tenant: Tenant, call_id: str) -> str:
    sid = call_store.get(tenant.account_id, call_id).transfer_leg_sid
    assert sid and sid.startswith("CA")
    return sid


def test_a_warm_transfer_briefs_the_supervisor_then_bridges_the_caller(
    client: TestClient, stack: Stack, tenant: Tenant, platform: Platform
) -> None:
    line = _line(client, stack, tenant)
    supervisor = load_script(
        '{max_seconds: 300, steps: [{say: "Hi, this is Dana from support."}, '
        "{wait_seconds: 1}, hang_up]}"
    )
    # The supervisor rings long enough for the caller to be waiting (and hear ringback)
    platform.sim.set_callee(AGENT, "human", ring_seconds=15, script=supervisor)
    platform.voice.transfer = _warm("Support lead")
    sid = platform.sim.dial(line.phone_number, from_=CALLER, script=CALLER_SCRIPT)
    final = platform.sim.wait_for_call(sid, timeout=WAIT_SECONDS)
    assert platform.voice.transfer_error is None and not platform.voice.errors
    call = _ended_call(client, tenant)
    leg = _sim_call(platform, _leg_sid(tenant, call["id"]))
    # The supervisor was called from the platform's number, with inline TwiML: the brief, then
    # the call's conference (which they start)
    assert leg["to"] == AGENT and leg["from"] == line.phone_number
    supervisor_twiml = ET.fromstring(leg["documents"][0])
    assert supervisor_twiml.findtext("./Say") == BRIEF
    room = supervisor_twiml.find("./Dial/Conference")
    assert room is not None and room.text == f"talkturo-{call['id']}"
    assert (room.get("startConferenceOnEnter"), room.get("endConferenceOnExit")) == (
        "true",
        "true",
    )
    assert leg["party"]["heard"][0] == {"kind": "say", "text": BRIEF}
    statuses = [e["params"]["CallStatus"] for e in leg["events"] if e["kind"] == "status"]
    assert statuses == ["initiated", "ringing", "in-progress", "completed"]
    assert all(e["url"].startswith(f"{platform.api}/carrier/transfer-leg?") for e in leg["events"])
    _delivered(leg)
    # The caller waited in that conference hearing ringback, then was bridged with them
    caller_twiml = ET.fromstring(final["documents"][1])
    dial = caller_twiml.find("./Dial")
    assert dial is not None and _query(dial.get("action", ""))["mode"] == "warm"
    wait = caller_twiml.find("./Dial/Conference")
    assert wait is not None and wait.text == f"talkturo-{call['id']}"
    assert wait.get("waitUrl") == f"{platform.api}/carrier/wait"
    assert (wait.get("startConferenceOnEnter"), wait.get("beep")) == ("false", "false")
    (conference,) = final["dials"]
    assert conference["outcome"] == "answered" and conference["bridged_seconds"] > 1
    assert conference["waited_seconds"] > 0
    (ringback,) = [e for e in final["party"]["heard"] if e["kind"] == "play"]
    assert ringback["url"] == f"{platform.api}/carrier/ringback.wav"
    assert ringback["played"] >= 1 and ringback["seconds"] == 6.0 and "error" not in ringback
    heard = [(e["from"], e["text"]) for e in final["party"]["heard"] if e["kind"] == "voice"]
    assert heard == [(AGENT, "Hi, this is Dana from support.")]
    # The supervisor left, the conference ended, the caller's <Dial> action hung up
    action = [e for e in final["events"] if e["kind"] == "action"]
    assert [e["params"]["DialCallStatus"] for e in action] == ["answered"]
    _delivered(final)
    assert call["ended_reason"] == "transferred" and call["transfer_status"] == "completed"
    assert call["transferred_to"] == "Support lead"
    assert [s.get("resume") for s in platform.voice.streams] == [None]


def test_a_warm_transfer_nobody_answers_sends_the_caller_back(
    client: TestClient, stack: Stack, tenant: Tenant, platform: Platform
) -> None:
    line = _line(client, stack, tenant)
    platform.sim.set_callee(AGENT, "no_answer")
    platform.voice.transfer = _warm("Support lead")
    sid = platform.sim.dial(line.phone_number, from_=CALLER, script=CALLER_SCRIPT)
    final = platform.sim.wait_for_call(sid, timeout=WAIT_SECONDS)
    assert platform.voice.transfer_error is None
    assert platform.voice.resumed.is_set()
    call = _ended_call(client, tenant)
    leg = _sim_call(platform, _leg_sid(tenant, call["id"]))
    statuses = [e["params"]["CallStatus"] for e in leg["events"] if e["kind"] == "status"]
    assert statuses == ["initiated", "ringing", "no-answer"]
    # The caller came back to the voice service exactly once, with the resume claims
    resumed = [s for s in platform.voice.streams if s.get("resume")]
    assert len(resumed) == 1 and len(platform.voice.streams) == 2
    assert resumed[0]["resume"] == "transfer_failed"
    assert resumed[0]["transfer_status"] == "no-answer"
    assert resumed[0]["transfer_to"] == "Support lead" and resumed[0]["call"] == call["id"]
    # (they had been waiting in the conference, hearing ringback, until the redirect)
    (conference,) = final["dials"]
    assert conference["outcome"] == "redirected" and conference["bridged_seconds"] == 0
    assert any(e["kind"] == "play" for e in final["party"]["heard"])
    assert not [e for e in final["events"] if e["kind"] == "action"]  # a redirect: no action
    assert call["transfer_status"] == "no_answer" and call["ended_reason"] == "caller_hung_up"


def test_a_warm_transfer_the_carrier_refuses_leaves_the_caller_with_the_assistant(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    platform: Platform,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    line = _line(client, stack, tenant)
    # A number the carrier refuses: the dialing rules would stop it first, so they let it by.
    monkeypatch.setattr(
        transfers.dialing, "check", lambda _account, to, **_: Destination(number=to)
    )
    platform.voice.transfer = _warm("Support lead", number="+1555")  # not a callable number
    sid = platform.sim.dial(line.phone_number, from_=CALLER, script=CALLER_SCRIPT)
    final = platform.sim.wait_for_call(sid, timeout=WAIT_SECONDS)
    error = platform.voice.transfer_error
    assert isinstance(error, CarrierError) and not error.retryable
    call = _ended_call(client, tenant)
    assert call["transfer_status"] == "failed" and call["ended_reason"] == "caller_hung_up"
    assert len(final["documents"]) == 1  # never redirected
    assert call_store.get(tenant.account_id, call["id"]).transfer_leg_sid is None


def test_a_transfer_the_dialing_rules_refuse_leaves_the_caller_with_the_assistant(
    client: TestClient, stack: Stack, tenant: Tenant, platform: Platform
) -> None:
    line = _line(client, stack, tenant)
    # A destination stored before the rules: checked again when the transfer happens
    platform.voice.transfer = _warm("Hotline", number="+19002345678")
    sid = platform.sim.dial(line.phone_number, from_=CALLER, script=CALLER_SCRIPT)
    final = platform.sim.wait_for_call(sid, timeout=WAIT_SECONDS)
    error = platform.voice.transfer_error
    assert isinstance(error, InvalidRequest) and error.code == "destination_premium_rate"
    call = _ended_call(client, tenant)
    assert call["transfer_status"] is None and call["transferred_to"] is None
    assert len(final["documents"]) == 1 and final["dials"] == []  # never redirected
    # No supervisor leg was placed: the simulator holds the caller's call alone
    sim = platform.sim
    listed = httpx.get(
        f"{sim.url}/2010-04-01/Accounts/{sim.account_sid}/Calls.json",
        auth=(sim.account_sid, sim.auth_token),
        timeout=15,
    )
    assert [c["sid"] for c in listed.json()["calls"]] == [sid]


def test_a_cold_transfer_dials_the_destinations_extension_once_it_answers(
    client: TestClient, stack: Stack, tenant: Tenant, platform: Platform
) -> None:
    line = _line(client, stack, tenant)
    platform.sim.set_callee(AGENT, "human", ring_seconds=1, script=AGENT_SCRIPT)
    platform.voice.transfer = _cold("Sales desk", number=f"{AGENT};ext=42")
    sid = platform.sim.dial(line.phone_number, from_=CALLER, script=CALLER_SCRIPT)
    final = platform.sim.wait_for_call(sid, timeout=WAIT_SECONDS)
    assert platform.voice.transfer_error is None and not platform.voice.errors
    (bridge,) = final["dials"]
    assert bridge["to"] == AGENT and bridge["outcome"] == "completed"
    # The destination heard the extension's keys after it answered, before the bridge
    leg = _sim_call(platform, bridge["dial_call_sid"])
    heard = leg["party"]["heard"]
    assert heard[0] == {"kind": "digits", "digits": "42", "send_digits": "ww42"}
    assert _ended_call(client, tenant)["ended_reason"] == "transferred"


# --------------------------------------------------------------------------------- audio, webhooks


@pytest.fixture
def webhooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Only the carrier webhooks, served (what needs no data)."""
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", carrier_events.AUTH_TOKEN)
    config.get_settings.cache_clear()
    with served(create_webhook_app()) as url:
        yield url
    config.get_settings.cache_clear()


def test_the_ringback_is_a_wav_of_the_us_cadence(webhooks: str) -> None:
    answer = httpx.get(f"{webhooks}/carrier/ringback.wav", timeout=10)
    assert answer.status_code == 200 and answer.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(answer.content)) as wav:
        assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (8000, 2, 1)
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(float)
    assert len(samples) == 6 * 8000  # one cycle: 2 s on, 4 s off
    on, off = samples[: 2 * 8000], samples[2 * 8000 :]
    assert not off.any()
    assert np.sqrt(np.mean(on**2)) > 3000  # clearly audible
    spectrum = np.abs(np.fft.rfft(on))
    frequencies = np.fft.rfftfreq(len(on), 1 / 8000)
    peaks = sorted(frequencies[np.argsort(spectrum)[-2:]])
    assert peaks == [440.0, 480.0]
    # A signed fetch (Twilio signs GETs) is served too; a wrong signature is not
    url = f"{webhooks}/carrier/ringback.wav"
    signature = RequestValidator(carrier_events.AUTH_TOKEN).compute_signature(url, {})
    signed = httpx.get(url, headers={"X-Twilio-Signature": signature}, timeout=10)
    assert signed.status_code == 200 and signed.content == answer.content
    forged = httpx.get(url, headers={"X-Twilio-Signature": "AAAA"}, timeout=10)
    assert forged.status_code == 403


def _lambda_get(kind: str, *, signed: bool) -> dict[str, Any]:
    event = carrier_events.event(kind, {}, signature="sign" if signed else None)
    event["requestContext"]["http"]["method"] = "GET"
    event["body"] = ""
    answer: dict[str, Any] = carrier_events.module().handler(event, LambdaContext())
    return answer


@pytest.fixture
def signed_webhooks(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", carrier_events.AUTH_TOKEN)
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("VOICE_TOKEN_SECRET", SECRET)
    monkeypatch.setenv("PUBLIC_BASE_URL", f"https://{carrier_events.HOST}")
    config.get_settings.cache_clear()
    yield
    config.get_settings.cache_clear()


def test_the_transfer_webhooks_check_signatures(
    client: TestClient, stack: Stack, tenant: Tenant, signed_webhooks: None
) -> None:
    query = f"call=call_x&account={tenant.account_id}"
    dial = {"CallSid": "CA" + "1" * 32, "DialCallStatus": "busy"}
    leg = {"CallSid": "CA" + "2" * 32, "CallStatus": "no-answer"}
    for kind, params in (("transfer", dial), ("transfer-leg", leg), ("wait", {})):
        # Without a signature, or signed with another token: 403
        assert carrier_events.call(kind, params, query=query, signature=None)["statusCode"] == 403
        url = f"https://{carrier_events.HOST}/carrier/{kind}?{query}"
        forged = carrier_events.sign(url, params, "another-token")
        assert carrier_events.call(kind, params, query=query, signature=forged)["statusCode"] == 403
    # Signed: served (an unknown call's <Dial> action hangs up; the leg callback is a no-op)
    answer = carrier_events.call("transfer", dial, query=query)
    assert answer["statusCode"] == 200 and "<Hangup" in answer["body"]
    assert carrier_events.call("transfer-leg", leg, query=query)["statusCode"] == 204
    waiting = carrier_events.call("wait", {})
    assert waiting["statusCode"] == 200
    play = ET.fromstring(waiting["body"]).find("./Play")
    assert play is not None and play.get("loop") == "0"
    assert play.text == f"https://{carrier_events.HOST}/carrier/ringback.wav"
    # GET only where the carrier fetches with GET
    assert _lambda_get("wait", signed=True)["statusCode"] == 200
    assert _lambda_get("wait", signed=False)["statusCode"] == 403
    assert _lambda_get("transfer", signed=True)["statusCode"] == 405
    assert _lambda_get("voice", signed=True)["statusCode"] == 405
    audio = _lambda_get("ringback.wav", signed=False)
    assert audio["statusCode"] == 200 and audio["isBase64Encoded"] is True
    assert base64.b64decode(audio["body"]) == transfers.ringback_wav()


# --------------------------------------------------------------------------------- rules


def _record_of(**changes: Any) -> CallRecord:
    record = CallRecord(
        id="call_1",
        direction="inbound",
        status="in_progress",
        assistant_id="asst_1",
        phone_number_id="pn_1",
        from_number=CALLER,
        to_number="+14155550142",
        created_at=utcnow() - timedelta(minutes=2),
        answered_at=utcnow() - timedelta(minutes=1),
        carrier_sid="CA1",
    )
    return record.model_copy(update=changes)


def _completed() -> CallEvent:
    return CallEvent(at=utcnow(), status="ended", outcome="answered", ended_reason="caller_hung_up")


def test_the_carriers_end_after_a_transfer_is_transferred_in_either_order() -> None:
    started = transfer_started(_record_of(), to="Sales desk", mode="cold")
    # The <Dial> action first, then the carrier's completed
    bridged = transfer_moved(started, "completed")
    assert bridged is not None
    ended = apply(bridged, _completed())
    assert ended is not None and ended.ended_reason == "transferred"
    # The carrier's completed first, then the <Dial> action
    hung_up = apply(started, _completed())
    assert hung_up is not None and hung_up.ended_reason == "caller_hung_up"
    late = transfer_moved(hung_up, "completed")
    assert late is not None and late.ended_reason == "transferred"
    # A warm supervisor who answers after the caller hung up changes nothing
    warm = apply(transfer_started(_record_of(), to="Lead", mode="warm"), _completed())
    assert warm is not None and transfer_moved(warm, "answered") is None
    # A failed transfer's call ends as it would have
    failed = transfer_moved(started, "busy")
    assert failed is not None and transfer_moved(failed, "completed") is None
    end = apply(failed, _completed())
    assert end is not None and end.ended_reason == "caller_hung_up"
    # The public call shows the transfer, not its carrier details
    public = late.public().model_dump()
    assert public["transferred_to"] == "Sales desk" and public["transfer_status"] == "completed"
    assert "transfer_leg_sid" not in public and "transfer_held" not in public


@pytest.mark.parametrize(
    ("number", "tone"),
    [
        ("+14155550123", "us"),
        ("+14165550123", "us"),  # Canada rings like the US
        ("+493012345678", "de"),
        ("+442079460000", "uk"),
        ("+41441234567", "ch"),
        ("+97142345678", None),  # no Twilio ring tone for the UAE: Twilio's default
    ],
)
def test_the_ring_tone_follows_the_destinations_country(number: str, tone: str | None) -> None:
    assert transfers.ring_tone_for(number) == tone


def test_a_long_brief_is_cut_to_fit_twilios_inline_twiml_limit() -> None:
    twiml = transfers.supervisor_twiml(_record_of(), "Tom & Jerry <3 " * 400)
    assert len(twiml) <= transfers.MAX_INLINE_TWIML_CHARS
    root = ET.fromstring(twiml)
    assert str(root.findtext("./Say")).startswith("Tom & Jerry <3 Tom")
    assert root.findtext("./Dial/Conference") == "talkturo-call_1"
