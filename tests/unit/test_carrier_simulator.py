"""The carrier simulator's pieces that need no network: inventory and webhook signatures."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import phonenumbers
import pytest
from phonenumbers import PhoneNumberType
from twilio.request_validator import RequestValidator

from talkturo.domain.telephony import COUNTRIES
from talkturo.local.carrier_sim import twiml
from talkturo.local.carrier_sim.inventory import build_inventory
from talkturo.local.carrier_sim.network import Network
from talkturo.simcaller import audio
from talkturo.simcaller.audio import (
    FRAME_BYTES,
    SILENCE_BYTE,
    beep,
    frames,
    is_silent,
    silence,
    synthetic_speech,
)
from talkturo.simcaller.scripts import (
    HangUp,
    Interrupt,
    Press,
    Say,
    ScriptError,
    WaitForSilence,
    load_script,
    read_script,
)

TOKEN = "12345678901234567890123456789012"


def test_the_inventory_is_deterministic_and_unique() -> None:
    first = [n.phone_number for n in build_inventory()]
    assert first == [n.phone_number for n in build_inventory()]
    assert len(first) == len(set(first))
    assert first != [n.phone_number for n in build_inventory(seed=7)]


@pytest.mark.parametrize("country", COUNTRIES)
@pytest.mark.parametrize("kind", ["local", "toll_free"])
def test_every_offered_number_is_valid_for_its_country_and_type(country: str, kind: str) -> None:
    offered = [n for n in build_inventory() if n.iso_country == country and n.type == kind]
    assert len(offered) >= 10
    wanted = (
        {PhoneNumberType.TOLL_FREE}
        if kind == "toll_free"
        else {PhoneNumberType.FIXED_LINE, PhoneNumberType.FIXED_LINE_OR_MOBILE}
    )
    for number in offered:
        parsed = phonenumbers.parse(number.phone_number, None)
        assert phonenumbers.is_valid_number_for_region(parsed, country), number
        assert phonenumbers.number_type(parsed) in wanted, number
        assert phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == (
            number.phone_number
        )
        assert number.phone_number[1:].startswith(str(parsed.country_code) + number.area_code), (
            number
        )


def test_north_american_numbers_carry_area_codes_and_places() -> None:
    us = [n for n in build_inventory() if n.iso_country == "US" and n.type == "local"]
    assert {n.area_code for n in us} >= {"212", "415"}
    assert all(n.region and n.locality and n.lata for n in us)
    toll_free = {n.area_code for n in build_inventory() if n.type == "toll_free"}
    assert {"800", "833"} <= toll_free


@pytest.mark.parametrize(
    ("url", "params"),
    [
        ("https://example.com/webhooks/status", {"CallSid": "CA1", "CallStatus": "ringing"}),
        ("https://example.com:8443/prod/voice?x=1&y=2", {"To": "+14155550100", "From": "+1"}),
        ("http://127.0.0.1:8000/hooks", {}),
        ("https://example.com/a", {"Caller": "+4930123", "Called": "é ü"}),
    ],
)
def test_signatures_validate_with_the_sdk(url: str, params: dict[str, str]) -> None:
    network = Network("AC" + "0" * 32, TOKEN)
    signature = network.signature(url, params)
    validator = RequestValidator(TOKEN)

    assert validator.validate(url, params, signature)
    assert not RequestValidator("another-token").validate(url, params, signature)
    if params:
        tampered = {**params, next(iter(params)): "tampered"}
        assert not validator.validate(url, tampered, signature)
    assert not validator.validate(url + "extra", params, signature)


def test_the_signature_is_twilios_documented_algorithm() -> None:
    """HMAC-SHA1 (key: auth token) over the full URL followed by each POST parameter's name
    and value, sorted by name; base64. Computed here independently of the SDK."""
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "To": "+18005551212",
        "CallSid": "CA1234567890ABCDE",
        "From": "+12349013030",
        "Digits": "1234",
        "Caller": "+12349013030",
    }
    payload = url + "".join(name + params[name] for name in sorted(params))
    expected = base64.b64encode(
        hmac.new(b"12345", payload.encode(), hashlib.sha1).digest()
    ).decode()

    assert Network("AC" + "0" * 32, "12345").signature(url, params) == expected


# ---------------------------------------------------------------------------------- scripts
SCRIPT_YAML = """
name: booking caller
voice: en-us
steps:
  - wait_for_silence
  - say: "Hello, I'd like to book a table."
  - wait_seconds: 1.5
  - press: 12#
  - interrupt: {text: "Sorry, one more thing", timeout: 5}
  - wait_for_silence: {seconds: 1, timeout: 10}
  - hang_up
"""


def test_a_script_reads_from_yaml_with_short_and_long_step_forms() -> None:
    script = load_script(SCRIPT_YAML)
    kinds = [step.kind for step in script.steps]
    assert kinds == [
        "wait_for_silence",
        "say",
        "wait_seconds",
        "press",
        "interrupt",
        "wait_for_silence",
        "hang_up",
    ]
    assert script.steps[3] == Press(digits="12#")
    assert script.steps[4] == Interrupt(text="Sorry, one more thing", timeout=5)
    assert script.steps[5] == WaitForSilence(seconds=1, timeout=10)
    # JSON is YAML; a bare list is a list of steps; the dumped form loads back the same.
    assert load_script('[{"say": "hi"}, "hang_up"]').steps == [Say(text="hi"), HangUp()]
    assert load_script(json.dumps(script.as_dict())) == script


def test_callee_scripts_carry_a_behaviour_and_a_voicemail_greeting() -> None:
    script = load_script("behaviour: voicemail\ngreeting: Leave a message after the beep.")
    assert script.behaviour == "voicemail" and script.greeting
    assert load_script("behaviour: busy").behaviour == "busy"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("steps: [{say: ''}]", "step 1: text"),
        ("steps: [{press: 'x1'}]", "not DTMF keys"),
        ("steps: [dance]", "unknown step 'dance'"),
        ("steps: [{say: hi, press: 1}]", "exactly one key"),
        ("steps: [{hang_up: now}]", "hang_up takes no value"),
        ("steps: [{wait_seconds: -1}]", "seconds"),
        ("steps: [{wait_for_silence: {seconds: 1, patience: 2}}]", "patience"),
        ("behaviour: sleepy", "behaviour"),
        ("greeting: hi", "greeting is for behaviour: voicemail"),
        ("voice: 'en us; rm -rf'", "voice"),
        ("unknown: 1", "unknown"),
        ("steps: [", "not valid YAML"),
        ("42", "a script is a mapping"),
    ],
)
def test_invalid_scripts_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ScriptError, match=re.escape(message)):
        load_script(text)


# ---------------------------------------------------------------------------------- audio
def test_audio_is_cut_in_20_ms_frames_of_160_mulaw_bytes() -> None:
    speech = synthetic_speech("Hello there, how are you")
    assert speech == synthetic_speech("Hello there, how are you")  # deterministic
    cut = frames(speech)
    assert all(len(frame) == FRAME_BYTES == 160 for frame in cut)
    assert b"".join(cut)[: len(speech)] == speech
    assert len(cut) == -(-len(speech) // 160)
    assert frames(b"\x00" * 161)[1] == b"\x00" + bytes([SILENCE_BYTE]) * 159
    assert is_silent(silence(0.02)) and not is_silent(beep()[:160])
    assert len(silence(1.0)) == 8000


def test_without_espeak_lines_use_the_synthetic_voice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio.shutil, "which", lambda name: None)
    monkeypatch.setattr(audio, "piper_available", lambda: False)  # nor the `speech` extra
    speech = audio.speak("Hi there")
    assert speech.engine == "synthetic" and speech.seconds > 0.3
    with pytest.raises(RuntimeError, match="espeak-ng is not installed"):
        audio.speak("Hi", engine="espeak-ng")


@pytest.mark.skipif(not audio.espeak_available(), reason="espeak-ng is not installed")
def test_espeak_lines_become_8khz_mulaw() -> None:
    speech = audio.speak("Hello, I would like to book a table", engine="espeak-ng")
    assert speech.engine == "espeak-ng" and 1.0 < speech.seconds < 6.0


# ---------------------------------------------------------------------------------- TwiML
def test_twiml_parses_the_verbs_the_simulator_runs() -> None:
    verbs = twiml.parse(
        '<?xml version="1.0" encoding="UTF-8"?><Response><Say voice="alice">Hi &amp; bye</Say>'
        '<Pause length="2"/><Redirect method="GET">next</Redirect>'
        '<Connect action="/after"><Stream url="wss://voice.example/stream">'
        '<Parameter name="token" value="t-1"/></Stream></Connect><Gather/><Hangup/></Response>',
        base_url="https://platform.example/carrier/voice",
    )
    assert verbs == [
        twiml.Say("Hi & bye", voice="alice"),
        twiml.Pause(2.0),
        twiml.Redirect("https://platform.example/carrier/next", "GET"),
        twiml.Stream(
            url="wss://voice.example/stream",
            parameters={"token": "t-1"},
            action="https://platform.example/after",
        ),
        twiml.Unsupported("Gather"),
        twiml.Hangup(),
    ]


@pytest.mark.parametrize(
    "document",
    [
        "",
        "this is not XML",
        "<Response><Say>unclosed</Response>",
        "<Answer><Say>hi</Say></Answer>",
        '<Response><Connect><Stream url="https://x"/></Connect></Response>',
        '<!DOCTYPE x [<!ENTITY a "b">]><Response/>',
    ],
)
def test_documents_that_are_not_twiml_are_error_12100(document: str) -> None:
    with pytest.raises(twiml.TwimlError) as caught:
        twiml.parse(document)
    assert caught.value.code == 12100


# ---------------------------------------------------------------------------------- inbound
VOICE = "https://platform.example/carrier/voice"
STATUS = "https://platform.example/carrier/status"


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """Created before the network is blocked (asyncio's own wake-up pipe is a socket pair)."""
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


def _inbound(
    loop: asyncio.AbstractEventLoop, documents: dict[str, str], script: str = "[hang_up]"
) -> tuple[Any, list[tuple[str, dict[str, str], str]]]:
    """Run an inbound call with webhooks answered from `documents`, no network."""
    sent: list[tuple[str, dict[str, str], str]] = []

    async def run() -> Any:
        network = Network("AC" + "0" * 32, TOKEN, time_scale=0.001, tts="synthetic")

        async def send(url: str, params: dict[str, str], method: str = "POST") -> httpx.Response:
            sent.append((url, params, method))
            if url in documents:
                return httpx.Response(200, text=documents[url])
            return httpx.Response(204 if url == STATUS else 404)

        network.send = send  # type: ignore[method-assign]
        network.numbers["PN1"] = {
            "sid": "PN1",
            "phone_number": "+14155550142",
            "voice_url": VOICE,
            "voice_method": "POST",
            "status_callback": STATUS,
        }
        call = network.start_inbound("+12025550143", "+14155550142", load_script(script))
        await asyncio.wait_for(call.done.wait(), 5)
        await network.close()
        return call

    return loop.run_until_complete(run()), sent


def _statuses(sent: list[tuple[str, dict[str, str], str]]) -> list[str]:
    return [params["CallStatus"] for url, params, _ in sent if url == STATUS]


def test_an_inbound_call_fetches_the_voice_url_hears_say_and_hangs_up(
    loop: asyncio.AbstractEventLoop,
) -> None:
    call, sent = _inbound(
        loop,
        {VOICE: "<Response><Say>Sorry, this number is not available.</Say><Hangup/></Response>"},
    )
    assert call.status == "completed" and call.direction == "inbound"
    assert [e for e in call.record.heard if e["kind"] == "say"] == [
        {"kind": "say", "text": "Sorry, this number is not available."}
    ]
    voice = next(params for url, params, _ in sent if url == VOICE)
    assert voice["CallStatus"] == "ringing" and voice["Direction"] == "inbound"
    assert voice["From"] == voice["Caller"] == "+12025550143"
    assert voice["To"] == voice["Called"] == "+14155550142"
    assert voice["ApiVersion"] == "2010-04-01" and voice["CallSid"] == call.sid
    # A number's StatusCallback hears only the end of the call (Twilio), with its duration.
    assert _statuses(sent) == ["completed"]
    final = [params for url, params, _ in sent if url == STATUS][-1]
    assert int(final["CallDuration"]) >= 1 and final["SequenceNumber"] == "0"
    assert [url for url, _, _ in sent] == [VOICE, STATUS]


def test_pause_redirect_and_the_end_of_the_document(loop: asyncio.AbstractEventLoop) -> None:
    call, sent = _inbound(
        loop,
        {
            VOICE: '<Response><Pause length="1"/><Redirect>/carrier/next</Redirect>'
            "<Say>never</Say></Response>",
            "https://platform.example/carrier/next": "<Response><Say>Moved.</Say></Response>",
        },
    )
    assert [e["kind"] for e in call.record.heard] == ["pause", "say"]
    assert call.record.heard[1]["text"] == "Moved."
    assert [url for url, _, _ in sent if url != STATUS] == [
        VOICE,
        "https://platform.example/carrier/next",
    ]
    assert call.status == "completed"  # the end of a document hangs up


def test_an_answer_that_is_not_twiml_fails_the_call_with_12100(
    loop: asyncio.AbstractEventLoop,
) -> None:
    call, sent = _inbound(loop, {VOICE: "Hello, I am not XML"})
    assert call.status == "failed" and call.error_code == 12100
    final = [params for url, params, _ in sent if url == STATUS][-1]
    assert final["CallStatus"] == "failed" and final["ErrorCode"] == "12100"
    assert _statuses(sent) == ["failed"]


def test_an_unreachable_voice_url_fails_the_call_with_11200(
    loop: asyncio.AbstractEventLoop,
) -> None:
    call, sent = _inbound(loop, {})
    assert call.status == "failed" and call.error_code == 11200
    assert _statuses(sent) == ["failed"]


def test_the_example_caller_script_is_valid() -> None:
    from pathlib import Path

    script = read_script(Path(__file__).parents[2] / "examples" / "caller.yaml")
    # It talks over the assistant and presses 9; the assistant, not the caller, hangs up.
    assert any(isinstance(step, Interrupt) for step in script.steps)
    assert Press(digits="9") in script.steps and HangUp() not in script.steps


# ---------------------------------------------------------------------------------- transfers
def test_twiml_parses_dial_conference_and_play() -> None:
    verbs = twiml.parse(
        "<Response>"
        '<Dial action="/carrier/transfer?call=c1&amp;account=a1" method="POST" timeout="20" '
        'callerId="+14155550142" answerOnBridge="true" ringTone="de">'
        "<Number>+493012345678</Number></Dial>"
        "<Dial> +14155550123 </Dial>"
        '<Dial timeout="9999">+14155550123</Dial>'
        '<Dial action="https://platform.example/t" method="GET"><Conference '
        'startConferenceOnEnter="false" endConferenceOnExit="true" waitUrl="/carrier/wait" '
        'waitMethod="GET" beep="false">talkturo-c1</Conference></Dial>'
        '<Dial><Conference waitUrl="">silent-room</Conference></Dial>'
        "<Dial><Conference>plain</Conference></Dial>"
        '<Play loop="0">/carrier/ringback.wav</Play><Play>https://media.example/a.wav</Play>'
        "<Dial><Client>alice</Client></Dial>"
        "</Response>",
        base_url="https://platform.example/carrier/voice",
    )
    assert verbs == [
        twiml.Dial(
            number="+493012345678",
            action="https://platform.example/carrier/transfer?call=c1&account=a1",
            timeout=20,
            caller_id="+14155550142",
            answer_on_bridge=True,
            ring_tone="de",
        ),
        twiml.Dial(number="+14155550123"),  # a bare number; Twilio's defaults
        twiml.Dial(number="+14155550123", timeout=600),  # kept within Twilio's range
        twiml.Dial(
            conference=twiml.Conference(
                name="talkturo-c1",
                start_conference_on_enter=False,
                end_conference_on_exit=True,
                wait_url="https://platform.example/carrier/wait",
                wait_method="GET",
                beep="false",
            ),
            action="https://platform.example/t",
            method="GET",
        ),
        twiml.Dial(conference=twiml.Conference(name="silent-room", wait_url="")),
        twiml.Dial(conference=twiml.Conference(name="plain", wait_url=None)),
        twiml.Play("https://platform.example/carrier/ringback.wav", loop=0),
        twiml.Play("https://media.example/a.wav"),
        twiml.Unsupported("Dial/Client"),
    ]
    assert verbs[0].timeout == 20 and twiml.Dial(number="x").timeout == 30


@pytest.mark.parametrize(
    "document",
    [
        "<Response><Dial/></Response>",
        '<Response><Dial timeout="soon">+14155550123</Dial></Response>',
        '<Response><Dial answerOnBridge="yes">+14155550123</Dial></Response>',
        '<Response><Dial method="PUT">+14155550123</Dial></Response>',
        "<Response><Dial><Conference/></Dial></Response>",
        '<Response><Dial><Conference beep="loud">x</Conference></Dial></Response>',
        '<Response><Dial><Conference startConferenceOnEnter="1">x</Conference></Dial></Response>',
        '<Response><Play loop="-1">https://media.example/a.wav</Play></Response>',
        '<Response><Play loop="twice">https://media.example/a.wav</Play></Response>',
        "<Response><Play/></Response>",
        '<Response><Dial><Number sendDigits="ext9">+14155550123</Number></Dial></Response>',
    ],
)
def test_malformed_dial_and_play_are_error_12100(document: str) -> None:
    with pytest.raises(twiml.TwimlError) as caught:
        twiml.parse(document)
    assert caught.value.code == 12100


def test_twiml_reads_the_digits_a_number_is_sent_after_it_answers() -> None:
    (dial,) = twiml.parse(
        '<Response><Dial><Number sendDigits="ww42#">+14155550123</Number></Dial></Response>'
    )
    assert dial == twiml.Dial(number="+14155550123", send_digits="ww42#")


ACTION = "https://platform.example/carrier/transfer"
MEDIA = "https://platform.example/carrier/ringback.wav"
NUMBER = "+14155550142"  # the platform's number, held in the simulator
AGENT = "+14155550199"


def _wav(seconds: float, rate: int = 16000) -> bytes:
    import io
    import math
    import wave
    from array import array

    samples = array(
        "h",
        (round(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(int(seconds * rate))),
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())
    return buffer.getvalue()


Sent = list[tuple[str, dict[str, str], str]]


def _call(
    loop: asyncio.AbstractEventLoop,
    answers: dict[str, httpx.Response],
    *,
    callee: Any = None,
    script: str = "[wait_seconds: 600]",
) -> tuple[Any, Network, Sent]:
    """An inbound call to NUMBER whose webhooks are answered from `answers`, no network;
    AGENT behaves as `callee` when dialed."""
    sent: Sent = []

    async def run() -> tuple[Any, Network]:
        network = Network("AC" + "0" * 32, TOKEN, time_scale=0.001, tts="synthetic")

        async def send(url: str, params: dict[str, str], method: str = "POST") -> httpx.Response:
            sent.append((url, params, method))
            return answers.get(url) or httpx.Response(204 if url == STATUS else 404)

        network.send = send  # type: ignore[method-assign]
        network.numbers["PN1"] = {
            "sid": "PN1",
            "phone_number": NUMBER,
            "voice_url": VOICE,
            "voice_method": "POST",
            "status_callback": STATUS,
        }
        if callee is not None:
            network.callees[AGENT] = callee
        call = network.start_inbound("+12025550143", NUMBER, load_script(script))
        await asyncio.wait_for(call.done.wait(), 5)
        await network.close()
        return call, network

    call, network = loop.run_until_complete(run())
    return call, network, sent


def _twiml(body: str) -> httpx.Response:
    return httpx.Response(200, text=body, headers={"Content-Type": "application/xml"})


DIAL_AGENT = (
    f'<Response><Dial action="{ACTION}" timeout="20" callerId="{NUMBER}">'
    f"<Number>{AGENT}</Number></Dial><Say>not reached</Say></Response>"
)


def test_a_busy_dial_requests_the_action_whose_twiml_continues_the_call(
    loop: asyncio.AbstractEventLoop,
) -> None:
    from talkturo.local.carrier_sim.network import Callee

    call, network, sent = _call(
        loop,
        {VOICE: _twiml(DIAL_AGENT), ACTION: _twiml("<Response><Say>Busy, sorry.</Say></Response>")},
        callee=Callee("busy", ring_seconds=1),
    )
    action = [(params, method) for url, params, method in sent if url == ACTION]
    assert len(action) == 1
    params, method = action[0]
    assert method == "POST" and params["DialCallStatus"] == "busy"
    assert params["CallSid"] == call.sid and params["CallStatus"] == "in-progress"
    leg = network.calls[params["DialCallSid"]]
    assert leg.parent_call_sid == call.sid and leg.status == "busy" and leg.to == AGENT
    assert leg.from_ == NUMBER and leg.direction == "outbound-dial"
    kinds = [e["kind"] for e in call.record.heard]
    assert kinds == ["dial", "say"] and call.record.heard[1]["text"] == "Busy, sorry."
    assert call.dials[0]["outcome"] == "busy" and call.dials[0]["bridged_seconds"] == 0
    assert call.status == "completed"


def test_an_answered_dial_bridges_the_parties_until_one_hangs_up(
    loop: asyncio.AbstractEventLoop,
) -> None:
    from talkturo.local.carrier_sim.network import Callee

    agent = load_script('[{say: "Sales, Sam speaking."}, {wait_for_silence: 0.5}, hang_up]')
    caller = '[{wait_for_silence: {seconds: 0.3, timeout: 30}}, {say: "Hi Sam, a refund."}]'
    call, network, sent = _call(
        loop,
        {VOICE: _twiml(DIAL_AGENT), ACTION: _twiml("<Response><Hangup/></Response>")},
        callee=Callee("human", ring_seconds=1, script=agent),
        script=caller,
    )
    params = next(params for url, params, _ in sent if url == ACTION)
    assert params["DialCallStatus"] == "completed" and int(params["DialCallDuration"]) >= 1
    leg = network.calls[params["DialCallSid"]]
    # Each party heard the other's lines, in order, as audio too.
    heard = [e for e in call.record.heard if e["kind"] == "voice"]
    assert [(e["from"], e["text"]) for e in heard] == [(AGENT, "Sales, Sam speaking.")]
    assert [(e["from"], e["text"]) for e in leg.record.heard if e["kind"] == "voice"] == [
        ("+12025550143", "Hi Sam, a refund.")
    ]
    assert len(call.record.heard_audio) > 8000 and len(leg.record.heard_audio) > 8000
    # The callee hung up: the bridge ended, the action's <Hangup/> ended the call.
    dial = call.dials[0]
    assert dial["outcome"] == "completed" and dial["ended_by"] == "callee"
    assert dial["bridged_seconds"] > 1 and leg.status == "completed"
    assert [e["kind"] for e in call.record.heard][-2:] == ["other_hung_up", "hangup"]
    assert call.status == "completed"


def test_a_dial_with_a_caller_id_the_account_does_not_hold_fails(
    loop: asyncio.AbstractEventLoop,
) -> None:
    document = (
        f'<Response><Dial action="{ACTION}" callerId="+14155550100">{AGENT}</Dial></Response>'
    )
    call, _, sent = _call(
        loop, {VOICE: _twiml(document), ACTION: _twiml("<Response><Hangup/></Response>")}
    )
    params = next(params for url, params, _ in sent if url == ACTION)
    assert params["DialCallStatus"] == "failed" and "DialCallSid" not in params
    assert call.dials[0]["error_code"] == 13214


def test_play_fetches_the_wav_signed_and_plays_it_loop_times(
    loop: asyncio.AbstractEventLoop,
) -> None:
    document = f'<Response><Play loop="2">{MEDIA}</Play><Play>{MEDIA}x</Play></Response>'
    call, _, sent = _call(
        loop,
        {
            VOICE: _twiml(document),
            MEDIA: httpx.Response(200, content=_wav(0.5), headers={"Content-Type": "audio/wav"}),
            MEDIA + "x": httpx.Response(200, text="<html/>"),
        },
    )
    fetches = [(url, params, method) for url, params, method in sent if url.startswith(MEDIA)]
    assert fetches == [(MEDIA, {}, "GET"), (MEDIA + "x", {}, "GET")]
    played, broken = [e for e in call.record.heard if e["kind"] == "play"]
    assert played["played"] == 2 and played["seconds"] == 0.5 and "error" not in played
    assert len(call.record.heard_audio) == 2 * 4000  # 8 kHz mu-law, resampled from 16 kHz
    assert "not a PCM WAV" in broken["error"] and broken["played"] == 0


def test_numbers_held_again_are_off_offer_and_their_webhooks_follow_the_platform() -> None:
    network = Network("AC" + "0" * 32, TOKEN)
    offered = next(iter(network.available))
    network.hold_numbers(
        [
            {
                "sid": "PN" + "1" * 32,
                "phone_number": offered,
                "voice_url": "http://127.0.0.1:8000/carrier/voice",
                "status_callback": "http://127.0.0.1:8000/carrier/status",
                "voice_fallback_url": "https://elsewhere.example.com/fallback",
                "sms_url": "http://127.0.0.1:80001/not-the-platform",
            }
        ]
    )

    network.rebase_urls("http://127.0.0.1:8000/", "http://127.0.0.1:9000")

    assert offered not in network.available
    held = network.number_for(offered)
    assert held is not None
    assert held["voice_url"] == "http://127.0.0.1:9000/carrier/voice"
    assert held["status_callback"] == "http://127.0.0.1:9000/carrier/status"
    assert held["voice_fallback_url"] == "https://elsewhere.example.com/fallback"
    assert held["sms_url"] == "http://127.0.0.1:80001/not-the-platform"


# ---------------------------------------------------------------------------------- activity


def test_the_activity_counts_outbound_calls_live_at_once_and_when_each_ended(
    loop: asyncio.AbstractEventLoop,
) -> None:
    from talkturo.local.carrier_sim.app import CarrierApp
    from talkturo.local.carrier_sim.network import Callee

    sid = "AC" + "1" * 32

    async def run() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        network = Network(sid, TOKEN, time_scale=0.01, tts="synthetic")

        async def send(url: str, params: dict[str, str], method: str = "POST") -> httpx.Response:
            return httpx.Response(204)

        network.send = send  # type: ignore[method-assign]
        network.numbers["PN1"] = {"sid": "PN1", "phone_number": "+14155550142"}
        network.callees["+12025550101"] = Callee("busy", ring_seconds=1)
        network.callees["+12025550102"] = Callee("no_answer")
        network.callees["+12025550103"] = Callee("failed")
        app = CarrierApp(network, TOKEN).app
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://sim", auth=(sid, TOKEN)
        ) as client:
            placed = []
            for n in (1, 2, 3):
                answer = await client.post(
                    f"/2010-04-01/Accounts/{sid}/Calls.json",
                    data={
                        "To": f"+1202555010{n}",
                        "From": "+14155550142",
                        "Twiml": "<Response><Hangup/></Response>",
                        "Timeout": "30",
                    },
                )
                assert answer.status_code == 201, answer.text
                placed.append(answer.json()["sid"])
            live = (await client.get("/_sim/activity")).json()
            for call_sid in placed:
                await asyncio.wait_for(network.calls[call_sid].done.wait(), 5)
            done = (await client.get("/_sim/activity")).json()
            assert (await client.delete("/_sim/activity")).status_code == 204
            cleared = (await client.get("/_sim/activity")).json()
        await network.close()
        return [live, done], cleared

    (live, done), cleared = loop.run_until_complete(run())
    assert live["live"] == live["max_live"] == 3
    assert done["live"] == 0 and done["max_live"] == 3
    by_to = {c["to"]: c for c in done["calls"]}
    assert {to: c["status"] for to, c in by_to.items()} == {
        "+12025550101": "busy",
        "+12025550102": "no-answer",
        "+12025550103": "failed",
    }
    for call in done["calls"]:
        assert call["from"] == "+14155550142"
        assert call["placed_at"] <= call["ended_at"]
    # No answer rings out its 30 s (0.3 s here): it ends after the busy line's 1 s.
    assert by_to["+12025550102"]["ended_at"] > by_to["+12025550101"]["ended_at"]
    assert cleared == {"live": 0, "max_live": 0, "calls": []}
