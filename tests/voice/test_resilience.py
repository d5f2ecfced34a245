"""When things go wrong during a call: silence, provider failures, a transcriber that drops,
credits running out, the time limit, an answering machine, a carrier socket that drops."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from talkturo.local.template import Stack
from talkturo.voice.providers.scripted import ToneVoice
from talkturo.voice.session import SessionSettings
from tests.conftest import Tenant
from tests.integration import dial_queue
from tests.voice.harness import VoiceNetwork, voice_network, wait_for_call_record
from tests.voice.test_conversations import _inbound, _line, _transcript

QUICK = SessionSettings(
    silence_nudge_seconds=1.0,
    silence_hangup_seconds=2.5,
    meter_increment_seconds=1.0,
    max_duration_margin_seconds=0.0,
)


@pytest.fixture
def quick(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[VoiceNetwork]:
    with voice_network(stack, monkeypatch, settings=QUICK) as network:
        yield network


def _assistant_lines(client: TestClient, tenant: Tenant, call_id: str) -> list[str]:
    return [m["text"] for m in _transcript(client, tenant, call_id) if m["role"] == "assistant"]


def test_a_silent_caller_is_nudged_then_the_call_ends(
    client: TestClient, stack: Stack, tenant: Tenant, quick: VoiceNetwork
) -> None:
    line = _line(client, stack, tenant, first_message="Hello?")
    _, record = _inbound(quick, client, tenant, line, [{"wait_seconds": 30}])
    assert record["ended_reason"] == "silence_timeout"
    assert _assistant_lines(client, tenant, record["id"]) == [
        "Hello?",
        QUICK.nudge,
        QUICK.goodbye_silence,
    ]


def test_a_model_failure_is_retried_once_then_the_caller_hears_an_apology(
    client: TestClient, stack: Stack, tenant: Tenant, quick: VoiceNetwork
) -> None:
    line = _line(client, stack, tenant, first_message="Hi.")
    quick.scripted.transcriber.lines = ["First question", "Second question"]
    quick.scripted.model.fail_next = 2  # the first turn: the try and its retry both fail
    answers = iter(["Here is the second answer."])
    quick.scripted.model.respond = lambda request: [next(answers)]
    _, record = _inbound(
        quick,
        client,
        tenant,
        line,
        [
            {"wait_for_silence": 0.5},
            {"say": "First question"},
            {"wait_for_silence": 0.6},
            {"say": "Second question"},
            {"wait_for_silence": 0.6},
            "hang_up",
        ],
    )
    assert _assistant_lines(client, tenant, record["id"]) == [
        "Hi.",
        QUICK.apology,
        "Here is the second answer.",
    ]
    assert len(quick.scripted.model.requests) == 3
    assert record["ended_reason"] == "caller_hung_up"


def test_a_voice_failure_is_retried_then_the_fallback_voice_speaks(
    client: TestClient, stack: Stack, tenant: Tenant, quick: VoiceNetwork
) -> None:
    line = _line(client, stack, tenant, first_message="Hi there.")
    quick.scripted.voice.fail_next = 2
    quick.scripted.fallback = ToneVoice()
    final, record = _inbound(quick, client, tenant, line, [{"wait_for_silence": 0.5}, "hang_up"])
    assert _assistant_lines(client, tenant, record["id"]) == ["Hi there."]
    assert quick.scripted.voice.texts == ["Hi there.", "Hi there."]
    assert quick.scripted.fallback.texts == ["Hi there."]
    assert final["party"]["heard_audio_seconds"] > 0.2


def test_a_transcriber_that_drops_is_reconnected_and_the_call_goes_on(
    client: TestClient, stack: Stack, tenant: Tenant, quick: VoiceNetwork
) -> None:
    line = _line(client, stack, tenant, first_message="Hi.")
    quick.scripted.transcriber.drop_after = 0.5
    quick.scripted.transcriber.lines = ["Are you there"]
    quick.scripted.model.respond = lambda request: ["Yes, I am here."]
    _, record = _inbound(
        quick,
        client,
        tenant,
        line,
        [
            {"wait_seconds": 1.0},
            {"say": "Are you there"},
            {"wait_for_silence": 0.6},
            "hang_up",
        ],
    )
    assert quick.scripted.transcriber.opened == 2
    assert _assistant_lines(client, tenant, record["id"])[-1] == "Yes, I am here."


def test_credits_running_out_mid_call_end_it_politely_and_the_charge_is_settled(
    client: TestClient, stack: Stack, tenant: Tenant, quick: VoiceNetwork
) -> None:
    from talkturo.services import credits

    line = _line(client, stack, tenant, first_message="Hi.")
    balance = credits.balance(tenant.account_id).balance
    left = Decimal("0.0030")  # less than one second of this assistant's rate
    credits.record(
        tenant.account_id, "adjustment", left - balance, idempotency_key="drain-for-test"
    )
    _, record = _inbound(quick, client, tenant, line, [{"wait_seconds": 20}])
    assert record["ended_reason"] == "no_credits"
    assert _assistant_lines(client, tenant, record["id"])[-1] == QUICK.goodbye_no_credits
    after = credits.balance(tenant.account_id).balance
    charged = Decimal(record["credits_charged"])
    assert charged > 0 and after == left - charged
    # The call ran a few seconds at most past the balance.
    assert record["duration_seconds"] <= 8


def test_the_time_limit_ends_the_call_with_a_goodbye(
    client: TestClient, stack: Stack, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = SessionSettings(
        silence_nudge_seconds=60, silence_hangup_seconds=60, max_duration_margin_seconds=27.0
    )
    with voice_network(stack, monkeypatch, settings=settings) as net:
        line = _line(
            client,
            stack,
            tenant,
            first_message="Hi.",
            telephony={"max_call_duration_seconds": 30},
        )
        _, record = _inbound(net, client, tenant, line, [{"wait_seconds": 20}])
    assert record["ended_reason"] == "max_duration"
    assert _assistant_lines(client, tenant, record["id"])[-1] == settings.goodbye_max_duration
    assert record["duration_seconds"] <= 8


def test_an_answering_machine_gets_the_voicemail_message_after_the_beep(
    client: TestClient, stack: Stack, tenant: Tenant, quick: VoiceNetwork
) -> None:
    line = _line(
        client,
        stack,
        tenant,
        first_message="Hi, this is Ada.",
        telephony={
            "voicemail": {
                "detect": True,
                "action": "leave_message",
                "message": "Sorry we missed you, please call us back.",
            }
        },
    )
    callee = "+14155550142"
    quick.sim.set_callee(callee, "voicemail", ring_seconds=0.5, amd_seconds=1.0)
    made = client.post(
        "/v1/calls",
        json={"assistant_id": line.assistant_id, "to_number": callee},
        headers=tenant.headers,
    )
    assert made.status_code == 201, made.text
    assert len(dial_queue.drain(stack)) == 1
    record = wait_for_call_record(client, tenant.headers, made.json()["id"], timeout=40)
    assert record["outcome"] == "voicemail" and record["answered_by"] == "machine"
    assert record["ended_reason"] == "voicemail"
    lines = _assistant_lines(client, tenant, record["id"])
    assert lines[-1] == "Sorry we missed you, please call us back."
