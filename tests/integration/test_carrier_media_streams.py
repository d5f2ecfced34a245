"""Inbound calls, TwiML and Media Streams: the carrier simulator against a small fake platform.

The fake platform (a Starlette app on a free loopback port) checks every X-Twilio-Signature with
the SDK's RequestValidator, answers the voice URL with TwiML, and runs a Media Streams server
that checks the order of the simulator's messages and sends audio, marks and clear back. Waits
are bounded conditions, never sleeps.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from twilio.request_validator import RequestValidator

from talkturo.local.carrier_sim import CarrierSimulator
from talkturo.local.carrier_sim.audio import FRAME_BYTES, is_silent, tone
from talkturo.local.carrier_sim.scripts import load_script

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

    def app(self) -> Starlette:
        validator = RequestValidator(self.auth_token)

        async def hook(request: Request) -> Response:
            params = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
            valid = validator.validate(
                str(request.url), params, request.headers.get("x-twilio-signature", "")
            )
            self.requests.append({"path": request.url.path, "params": params, "valid": valid})
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


def _serve(app: Any) -> tuple[uvicorn.Server, threading.Thread, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the fake platform did not start"
        time.sleep(0.01)
    return server, thread, sock.getsockname()[1]


@pytest.fixture
def simulator() -> Iterator[CarrierSimulator]:
    with CarrierSimulator(time_scale=TIME_SCALE, tts="synthetic") as sim:
        yield sim


@pytest.fixture
def platform(simulator: CarrierSimulator) -> Iterator[FakePlatform]:
    fake = FakePlatform(simulator.auth_token)
    server, thread, port = _serve(fake.app())
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    server.should_exit = True
    thread.join(timeout=5)


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
    assert [s["CallStatus"] for s in statuses] == ["ringing", "in-progress", "completed"]
    assert [s["SequenceNumber"] for s in statuses] == ["0", "1", "2"]
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
    assert statuses == ["ringing", "in-progress", "completed"]
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
    assert statuses == ["ringing", "in-progress", "completed"]


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
