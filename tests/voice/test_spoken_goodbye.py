"""The caller's words, not keys, end the call even when the transcriber lags behind the audio:
an offline transcriber on a busy CPU can take seconds for a final transcript. The call loop
then must not take the wait for silence (nudge "Are you still there?"), or the example's
keypad fallback (`press: "9"` once the assistant has spoken) ends the call before the words
arrive. The development model decides, as on the local platform."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from talkturo.local.template import Stack
from talkturo.voice.context import CallContext
from talkturo.voice.providers.llm.dev import DevelopmentModel
from talkturo.voice.providers.scripted import ScriptedTranscriber, ToneVoice
from talkturo.voice.session import CallProviders, SessionSettings
from tests.conftest import Tenant
from tests.voice.harness import VoiceNetwork, voice_network
from tests.voice.test_conversations import _inbound, _line, _transcript

NUDGE_SECONDS = 1.0
GOODBYE = "That's all, thank you. Goodbye."
CLOSING = "Thanks for calling. Goodbye."


@pytest.fixture
def lagging(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[VoiceNetwork]:
    # Nothing until the final, which comes well after a nudge would (a starved decoder).
    transcriber = ScriptedTranscriber(interims=False, final_delay=4 * NUDGE_SECONDS)
    voice = ToneVoice()

    def build(context: CallContext, env: dict[str, str]) -> CallProviders:
        return CallProviders(llm=DevelopmentModel(), transcriber=transcriber, voice=voice)

    settings = SessionSettings(silence_nudge_seconds=NUDGE_SECONDS)
    with voice_network(stack, monkeypatch, settings=settings, build=build) as network:
        network.scripted.transcriber = transcriber
        yield network


def test_a_goodbye_transcribed_late_ends_the_call_on_the_words_not_the_keypad_fallback(
    client: TestClient, stack: Stack, tenant: Tenant, lagging: VoiceNetwork
) -> None:
    line = _line(
        client,
        stack,
        tenant,
        first_message="Hello, this is the front desk.",
        tools=[{"type": "end_call", "config": {"closing_message": CLOSING}}],
    )
    lagging.scripted.transcriber.lines = [GOODBYE]
    # The example's ending: the goodbye, then the key once the assistant has spoken again.
    _, record = _inbound(
        lagging,
        client,
        tenant,
        line,
        [
            {"wait_for_silence": 0.5},
            {"say": GOODBYE},
            {"wait_for_silence": {"seconds": 0.5, "timeout": 30}},
            {"press": "9"},
            {"wait_for_silence": {"seconds": 0.5, "timeout": 30}},
        ],
    )
    assert record["ended_reason"] == "assistant_ended", record
    messages = _transcript(client, tenant, record["id"])
    spoken = [(m["role"], m["text"]) for m in messages if m["role"] in ("user", "assistant")]
    # No nudge while the words were on their way; the words ended the call, no key was read.
    assert SessionSettings().nudge not in [text for _, text in spoken], spoken
    assert [text for role, text in spoken if role == "user"] == [GOODBYE], spoken
    calls = [m["tool_calls"][0] for m in messages if m["role"] == "assistant" and m["tool_calls"]]
    assert [(c["name"], c["arguments"]["reason"]) for c in calls] == [
        ("end_call", "caller said goodbye")
    ]
    assert spoken[-1] == ("assistant", CLOSING)
