"""Inbound calls, TwiML and Media Streams: the carrier simulator against a small fake platform.

The fake platform (a Starlette app on a free loopback port) checks every X-Twilio-Signature with
the SDK's RequestValidator, answers the voice URL with TwiML, and runs a Media Streams server
that checks the order of the simulator's messages and sends audio, marks and clear back. Waits
are bounded conditions, never sleeps.
"""

from __future__ import annotations

import base64
import json
import threading
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
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from twilio.request_validator import RequestValidator

from talkturo.local.carrier_sim import CarrierSimulator
from talkturo.simcaller.audio import (
    FRAME_BYTES,
    beep,
    is_silent,
    silence,
    synthetic_speech,
    tone,
)
from talkturo.simcaller.scripts import load_script
from tests.asgi_server import served

pytestmark = pytest.mark.integration

TIME_SCALE = 0.25  # media frames every 5 ms
GREETING = tone(440.0, 0.4)  # 20 frames of the assistant's voice
LONG_ANSWER = tone(330.0, 6.0)


@dataclass
class FakePlatform:
    auth_token: str
    twiml: str = "<Response><Hangup/></Response>"
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)  # from the simulator, in order
    sent: list[dict[str, Any]] = field(default_factory=list)  # to the simulator
    errors: list[str] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)
    media_frames: int = 0  # media messages received so far, over every stream

    def app(self) -> Starlette:
        validator = RequestValidator(self.auth_token)

        async def hook(request: Request) -> Response:
            params = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
            valid = validator.validate(
                str(request.url), params, request.headers.get("x-twilio-signature", "")
            )
            self.requests.append(
                {
                    "path": request.url.path,
                    "params": params,
                    "valid": valid,
                    "at_frame": self.media_frames,
                }
            )
            if not valid:
                return Response(status_code=403)
            if request.url.path == "/carrier/voice":
                return Response(self.twiml, media_type="application/xml")
            return Response(status_code=204)

        return Starlette(
            routes=[
                Route("/carrier/{name}", hook, methods=["POST"]),
                WebSocketRoute("/stream", self.stream),
            ]
        )

    async def stream(self, websocket: WebSocket) -> None:
        """A Media Streams server: greets, answers a key press at length, clears on barge-in."""
        await websocket.accept()
        stream_sid = ""
        chunks = 0
        long_playing = False

        async def send(message: dict[str, Any]) -> None:
            message = {**message, "streamSid": stream_sid}
            self.sent.append({**message, "at_chunk": chunks})
            await websocket.send_text(json.dumps(message))

        async def media(audio: bytes) -> None:
            for start in range(0, len(audio), 800):  # 100 ms per message
                payload = base64.b64encode(audio[start : start + 800]).decode()
                await send({"event": "media", "media": {"payload": payload}})

        try:
            while True:
                message = json.loads(await websocket.receive_text())
                event = message["event"]
                self.messages.append({**message, "at_chunk": chunks})
                if event == "start":
                    stream_sid = message["streamSid"]
                    await media(GREETING)
                    await send({"event": "mark", "mark": {"name": "greeting"}})
                elif event == "media":
                    chunks += 1
                    self.media_frames += 1
                    frame = base64.b64decode(message["media"]["payload"])
                    if long_playing and not is_silent(frame):
                        long_playing = False
                        await send({"event": "clear"})
                elif event == "dtmf":
                    await media(LONG_ANSWER)
                    await send({"event": "mark", "mark": {"name": "long-answer"}})
                    long_playing = True
                elif event == "mark" and message["mark"]["name"] == "long-answer":
                    long_playing = False
                elif event == "stop":
                    break
        except WebSocketDisconnect:
            self.errors.append("the simulator closed without stop")
        finally:
            self.closed.set()

    def of(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path]


@pytest.fixture
def simulator() -> Iterator[CarrierSimulator]:
    with CarrierSimulator(time_scale=TIME_SCALE, tts="synthetic") as sim:
        yield sim


@pytest.fixture
def platform(simulator: CarrierSimulator) -> Iterator[FakePlatform]:
    fake = FakePlatform(simulator.auth_token)
    with served(fake.app()) as url:
        fake.url = url
        yield fake


def _buy(simulator: CarrierSimulator, platform: FakePlatform) -> str:
    auth = (simulator.account_sid, simulator.auth_token)
    base = f"{simulator.url}/2010-04-01/Accounts/{simulator.account_sid}"
    with httpx.Client(auth=auth) as client:
        offered = client.get(f"{base}/AvailablePhoneNumbers/US/Local.json").json()
        number = offered["available_phone_numbers"][0]["phone_number"]
        bought = client.post(
            f"{base}/IncomingPhoneNumbers.json",
            data={
                "PhoneNumber": number,
                "VoiceUrl": f"{platform.url}/carrier/voice",
                "StatusCallback": f"{platform.url}/carrier/status",
            },
        )
        assert bought.status_code == 201
    return str(number)


def test_an_inbound_caller_hears_say_and_the_call_ends(
    simulator: CarrierSimulator, platform: FakePlatform
) -> None:
    platform.twiml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        "<Response><Say>This number is not available.</Say><Hangup/></Response>"
    )
    number = _buy(simulator, platform)
    sid = simulator.dial(number, from_="+12025550143")
    final = simulator.wait_for_call(sid, timeout=10)

    assert final["status"] == "completed" and final["direction"] == "inbound"
    assert {"kind": "say", "text": "This number is not available."} in final["party"]["heard"]
    assert all(r["valid"] for r in platform.requests)
    (voice,) = platform.of("/carrier/voice")
    assert voice["params"]["CallStatus"] == "ringing"
    assert voice["params"]["Direction"] == "inbound"
    assert voice["params"]["From"] == "+12025550143" and voice["params"]["To"] == number
    statuses = [r["params"] for r in platform.of("/carrier/status")]
    # The number's StatusCallback hears only the end of the call, after the voice URL.
    assert [s["CallStatus"] for s in statuses] == ["completed"]
    assert [r["path"] for r in platform.requests] == ["/carrier/voice", "/carrier/status"]
    assert statuses[-1]["CallDuration"] == str(final["duration"])
    assert all(s["CallSid"] == sid and s["Direction"] == "inbound" for s in statuses)


def test_a_streamed_call_speaks_presses_interrupts_and_hangs_up(
    simulator: CarrierSimulator, platform: FakePlatform
) -> None:
    platform.twiml = (
        "<Response><Connect>"
        f'<Stream url="ws://{platform.url.removeprefix("http://")}/stream">'
        '<Parameter name="token" value="tok-123"/></Stream></Connect></Response>'
    )
    number = _buy(simulator, platform)
    script = load_script(
        """
        steps:
          - wait_for_silence: {seconds: 0.2, timeout: 10}
          - say: "I would like a table"
          - say: "for two people tonight"
          - press: "5"
          - interrupt: {text: "No wait, stop", timeout: 10}
          - wait_seconds: 0.5
          - hang_up
        """
    )
    sid = simulator.dial(number, script=script)
    final = simulator.wait_for_call(sid, timeout=20)
    assert platform.closed.wait(5)
    party = final["party"]

    # The protocol, in order: connected, start (with the <Parameter>s), media …, stop.
    events = [m["event"] for m in platform.messages]
    assert events[0] == "connected" and events[1] == "start" and events[-1] == "stop"
    assert set(events[2:-1]) <= {"media", "dtmf", "mark"}
    assert platform.messages[0] == {
        "event": "connected",
        "protocol": "Call",
        "version": "1.0.0",
        "at_chunk": 0,
    }
    start = platform.messages[1]
    stream_sid = start["streamSid"]
    assert stream_sid.startswith("MZ") and len(stream_sid) == 34
    assert start["start"]["customParameters"] == {"token": "tok-123"}
    assert start["start"]["callSid"] == sid
    assert start["start"]["accountSid"] == simulator.account_sid
    assert start["start"]["tracks"] == ["inbound"]
    assert start["start"]["mediaFormat"] == {
        "encoding": "audio/x-mulaw",
        "sampleRate": 8000,
        "channels": 1,
    }
    assert [int(m["sequenceNumber"]) for m in platform.messages[1:]] == list(
        range(1, len(platform.messages))
    )
    assert all(m["streamSid"] == stream_sid for m in platform.messages[1:])
    media = [m["media"] for m in platform.messages if m["event"] == "media"]
    assert [int(m["chunk"]) for m in media] == list(range(1, len(media) + 1))
    assert [int(m["timestamp"]) for m in media] == [20 * i for i in range(len(media))]
    assert all(m["track"] == "inbound" for m in media)
    assert all(len(base64.b64decode(m["payload"])) == FRAME_BYTES for m in media)
    assert platform.messages[-1]["stop"] == {"accountSid": simulator.account_sid, "callSid": sid}
    dtmf = [m for m in platform.messages if m["event"] == "dtmf"]
    assert [d["dtmf"] for d in dtmf] == [{"track": "inbound_track", "digit": "5"}]

    # What the caller said, and over what.
    said = party["said"]
    assert [s["text"] for s in said] == [
        "I would like a table",
        "for two people tonight",
        "No wait, stop",
    ]
    assert said[2]["interrupt"] and said[2]["over_audio"]
    assert not said[0]["over_audio"]  # it waited for the greeting to finish
    assert party["dtmf"] == ["5"] and party["protocol_errors"] == []

    # Marks: the greeting's is echoed only once its 20 frames have played out.
    echoes = {m["mark"]["name"]: m for m in platform.messages if m["event"] == "mark"}
    greeting_sent = next(s for s in platform.sent if s.get("mark", {}).get("name") == "greeting")
    assert echoes["greeting"]["at_chunk"] - greeting_sent["at_chunk"] >= len(GREETING) // 160
    # The barge-in: clear dropped the rest of the long answer and echoed its mark at once.
    assert party["cleared"] and party["cleared"][0]["dropped_bytes"] > 0
    assert "long-answer" in echoes
    marks = {m["name"]: m for m in party["marks"]}
    assert not marks["greeting"]["cleared"] and marks["long-answer"]["cleared"]
    heard = final["heard_audio"]
    assert heard.startswith(GREETING)
    assert len(GREETING) < len(heard) < len(GREETING) + len(LONG_ANSWER)

    assert final["status"] == "completed"
    statuses = [r["params"]["CallStatus"] for r in platform.of("/carrier/status")]
    assert statuses == ["completed"]
    assert all(r["valid"] for r in platform.requests)
    assert platform.errors == []


def test_the_platform_hanging_up_stops_the_stream(
    simulator: CarrierSimulator, platform: FakePlatform
) -> None:
    platform.twiml = (
        f'<Response><Connect><Stream url="ws://{platform.url.removeprefix("http://")}/stream"/>'
        "</Connect></Response>"
    )
    number = _buy(simulator, platform)
    sid = simulator.dial(number, script=load_script("steps: [{say: hello}]"))
    deadline = time.monotonic() + 10
    while not any(m["event"] == "media" for m in platform.messages):
        assert time.monotonic() < deadline, "no media arrived"
        time.sleep(0.01)
    auth = (simulator.account_sid, simulator.auth_token)
    ended = httpx.post(
        f"{simulator.url}/2010-04-01/Accounts/{simulator.account_sid}/Calls/{sid}.json",
        data={"Status": "completed"},
        auth=auth,
    )
    assert ended.status_code == 200
    final = simulator.wait_for_call(sid, timeout=10)
    assert platform.closed.wait(5)
    assert final["status"] == "completed"
    assert platform.messages[-1]["event"] == "stop"
    statuses = [r["params"]["CallStatus"] for r in platform.of("/carrier/status")]
    assert statuses == ["completed"]


def test_the_control_api_dials_and_reports_what_the_caller_heard(
    simulator: CarrierSimulator, platform: FakePlatform
) -> None:
    platform.twiml = "<Response><Say>Hello caller</Say></Response>"
    number = _buy(simulator, platform)
    auth = (simulator.account_sid, simulator.auth_token)
    with httpx.Client(base_url=simulator.url, auth=auth) as client:
        bad = client.post("/_sim/calls", json={"to": number, "script": {"steps": ["jump"]}})
        assert bad.status_code == 400 and "unknown step" in bad.json()["error"]
        unknown = client.post("/_sim/calls", json={"to": "+14155552671"})
        assert unknown.status_code == 404
        started = client.post("/_sim/calls", json={"to": number, "from": "+12025550143"})
        assert started.status_code == 201
        sid = started.json()["sid"]
        assert started.json()["direction"] == "inbound"
        report = client.get(f"/_sim/calls/{sid}", params={"wait": 10, "audio": 1}).json()
    assert report["done"] and report["status"] == "completed"
    assert {"kind": "say", "text": "Hello caller"} in report["party"]["heard"]
    assert report["party"]["heard_audio"] == ""


def test_the_cli_dials_and_sets_callees(
    simulator: CarrierSimulator, platform: FakePlatform, tmp_path: Any
) -> None:
    from click.testing import CliRunner

    from talkturo.cli import main

    platform.twiml = "<Response><Say>Welcome to Talkturo</Say><Hangup/></Response>"
    number = _buy(simulator, platform)
    script = tmp_path / "caller.yaml"
    script.write_text("steps:\n  - hang_up\n")
    env = {
        "TALKTURO_SIMULATOR_URL": simulator.url,
        "TWILIO_ACCOUNT_SID": simulator.account_sid,
        "TWILIO_AUTH_TOKEN": simulator.auth_token,
    }
    runner = CliRunner()
    dialed = runner.invoke(main, ["call", "dial", "--to", number, "--script", str(script)], env=env)
    assert dialed.exit_code == 0, dialed.output
    assert 'heard: "Welcome to Talkturo"' in dialed.output
    assert "Call completed" in dialed.output

    script.write_text("steps: [dance]\n")
    refused = runner.invoke(
        main, ["call", "dial", "--to", number, "--script", str(script)], env=env
    )
    assert refused.exit_code == 1 and "unknown step 'dance'" in refused.output

    set_up = runner.invoke(main, ["call", "callee", "+14155552671", "--behaviour", "busy"], env=env)
    assert set_up.exit_code == 0, set_up.output
    assert "+14155552671: busy" in set_up.output


# ---------------------------------------------------------------------------------- outbound
def _place(simulator: CarrierSimulator, platform: FakePlatform, to: str, **extra: str) -> str:
    """An outbound call from a number bought here to `to`, as the platform's dialer places it."""
    caller_id = _buy(simulator, platform)
    auth = (simulator.account_sid, simulator.auth_token)
    base = f"{simulator.url}/2010-04-01/Accounts/{simulator.account_sid}"
    data = {
        "To": to,
        "From": caller_id,
        "Url": f"{platform.url}/carrier/voice",
        "StatusCallback": f"{platform.url}/carrier/status",
        "StatusCallbackEvent": "initiated ringing answered completed",
        **extra,
    }
    placed = httpx.post(f"{base}/Calls.json", data=data, auth=auth)
    assert placed.status_code == 201, placed.text
    return str(placed.json()["sid"])


def _inbound_audio(platform: FakePlatform) -> bytes:
    return b"".join(
        base64.b64decode(m["media"]["payload"]) for m in platform.messages if m["event"] == "media"
    )


def _stream_twiml(platform: FakePlatform) -> str:
    return (
        f'<Response><Connect><Stream url="ws://{platform.url.removeprefix("http://")}/stream">'
        '<Parameter name="token" value="out-1"/></Stream></Connect></Response>'
    )


def test_an_answered_outbound_call_runs_the_callees_script_on_the_stream(
    simulator: CarrierSimulator, platform: FakePlatform
) -> None:
    platform.twiml = _stream_twiml(platform)
    callee = "+14155550142"
    script = load_script(
        """
        steps:
          - wait_for_silence: {seconds: 0.2, timeout: 10}
          - say: "Yes this is Sam speaking"
          - say: "I can talk now"
          - press: "7"
          - wait_seconds: 0.3
          - hang_up
        """
    )
    simulator.set_callee(callee, "human", ring_seconds=0.2, script=script)
    sid = _place(
        simulator,
        platform,
        callee,
        MachineDetection="Enable",
        AsyncAmd="true",
        AsyncAmdStatusCallback=f"{platform.url}/carrier/amd",
    )
    final = simulator.wait_for_call(sid, timeout=20)
    assert platform.closed.wait(5)

    assert final["status"] == "completed" and final["direction"] == "outbound-api"
    assert all(r["valid"] for r in platform.requests)
    (voice,) = platform.of("/carrier/voice")
    assert voice["params"]["CallStatus"] == "in-progress"
    statuses = [r["params"]["CallStatus"] for r in platform.of("/carrier/status")]
    assert statuses == ["initiated", "ringing", "in-progress", "completed"]
    assert [r["params"]["AnsweredBy"] for r in platform.of("/carrier/amd")] == ["human"]

    # The stream: connected, start with the <Parameter>s, the callee's voice, its key, stop.
    events = [m["event"] for m in platform.messages]
    assert events[:2] == ["connected", "start"] and events[-1] == "stop"
    assert platform.messages[1]["start"]["customParameters"] == {"token": "out-1"}
    assert platform.messages[1]["start"]["callSid"] == sid
    heard = _inbound_audio(platform)
    first, second = synthetic_speech("Yes this is Sam speaking"), synthetic_speech("I can talk now")
    assert heard.index(first) < heard.index(second)  # the lines, whole and in order
    assert heard.startswith(silence(0.02))  # it listened to the greeting first
    dtmf_at = events.index("dtmf")
    assert platform.messages[dtmf_at]["dtmf"] == {"track": "inbound_track", "digit": "7"}
    before_dtmf = b"".join(
        base64.b64decode(m["media"]["payload"])
        for m in platform.messages[:dtmf_at]
        if m["event"] == "media"
    )
    assert second in before_dtmf  # the key after the second line

    # The per-call record: what the callee said, pressed and heard.
    party = final["party"]
    assert [s["text"] for s in party["said"]] == ["Yes this is Sam speaking", "I can talk now"]
    assert not party["said"][0]["over_audio"]
    assert party["dtmf"] == ["7"] and party["protocol_errors"] == []
    assert final["heard_audio"].startswith(GREETING)
    assert {"kind": "stream", "outcome": "caller_hung_up"} in party["heard"]
    assert platform.errors == []


def test_a_voicemail_callee_plays_its_greeting_and_beep_before_the_amd_result(
    simulator: CarrierSimulator, platform: FakePlatform
) -> None:
    platform.twiml = _stream_twiml(platform)
    callee = "+14155550177"
    greeting = "Hi this is Sam leave a message"
    simulator.set_callee(
        callee,
        "voicemail",
        ring_seconds=0.2,
        talk_seconds=6,
        script=load_script(f"behaviour: voicemail\ngreeting: {greeting}"),
    )
    sid = _place(
        simulator,
        platform,
        callee,
        MachineDetection="DetectMessageEnd",
        AsyncAmd="true",
        AsyncAmdStatusCallback=f"{platform.url}/carrier/amd",
    )
    final = simulator.wait_for_call(sid, timeout=20)
    assert platform.closed.wait(5)

    (amd,) = platform.of("/carrier/amd")
    assert amd["params"]["AnsweredBy"] == "machine_end_beep"
    machine_seconds = len(synthetic_speech(greeting)) / 8000 + 0.3 + 0.5 + 0.1  # + beep's end
    assert int(amd["params"]["MachineDetectionDuration"]) == round(machine_seconds * 1000)
    # The greeting and the beep came down the stream as the callee's audio, then silence…
    frames = [
        base64.b64decode(m["media"]["payload"]) for m in platform.messages if m["event"] == "media"
    ]
    heard = b"".join(frames)
    assert synthetic_speech(greeting)[-1600:] in heard and beep()[-800:] in heard
    last_sound = max(i for i, frame in enumerate(frames) if not is_silent(frame))
    assert all(is_silent(frame) for frame in frames[last_sound + 1 :])
    # … and the detection answered only once the beep had played.
    assert amd["at_frame"] >= last_sound + 1
    assert final["answered_by"] == "machine_end_beep" and final["status"] == "completed"
    said = final["party"]["said"]
    assert said[0]["text"] == greeting and said[0]["greeting"] and said[1]["beep"]
    assert {"kind": "callee_hung_up", "reason": "max_seconds"} in final["party"]["heard"]
    statuses = [r["params"] for r in platform.of("/carrier/status")]
    assert statuses[-1]["CallStatus"] == "completed"
    assert statuses[-1]["AnsweredBy"] == "machine_end_beep"


def test_an_unreachable_stream_ends_the_connect_and_the_call_goes_on(
    simulator: CarrierSimulator, platform: FakePlatform
) -> None:
    platform.twiml = (
        '<Response><Connect><Stream url="ws://127.0.0.1:1/stream"/></Connect>'
        "<Say>The stream is down</Say></Response>"
    )
    callee = "+14155550178"
    simulator.set_callee(callee, "human", ring_seconds=0.2, talk_seconds=60)
    sid = _place(simulator, platform, callee)
    final = simulator.wait_for_call(sid, timeout=10)

    assert final["status"] == "completed" and int(final["duration"]) >= 1
    party = final["party"]
    assert party["streams"][0]["outcome"] == "connect_failed"
    kinds = [(e["kind"], e.get("outcome") or e.get("text")) for e in party["heard"]]
    assert kinds == [("stream", "connect_failed"), ("say", "The stream is down")]
    statuses = [r["params"]["CallStatus"] for r in platform.of("/carrier/status")]
    assert statuses == ["initiated", "ringing", "in-progress", "completed"]
