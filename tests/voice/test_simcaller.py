"""The simulated caller's parts that need no network: its voice through the platform's text to
speech, and the reply latencies it measures."""

from __future__ import annotations

import asyncio

import pytest

from talkturo.services.test_calls import turn_latencies
from talkturo.simcaller.media import PartyRecord, ScriptCursor
from talkturo.simcaller.scripts import parse_script
from talkturo.simcaller.voice import caller_voice
from talkturo.voice.providers.registry import MissingProviderKey
from talkturo.voice.providers.scripted import ToneVoice
from talkturo.voice.providers.tts.offline import EspeakSynthesizer
from talkturo.voice.providers.tts.piper import PiperSynthesizer
from tests.voice.memory import memory_context


def test_a_caller_without_an_engine_of_its_own_speaks_through_the_given_voice() -> None:
    voice = ToneVoice(first_audio_delay=0, realtime_factor=1000)
    cursor = ScriptCursor(parse_script({"steps": [{"say": "Hello there"}]}), voice=voice)
    speech = asyncio.run(cursor.speech("Hello there"))
    assert speech.engine == "scripted" and speech.seconds > 0.3
    assert voice.texts == ["Hello there"]
    asyncio.run(cursor.speech("Hello there"))  # said again: the same audio, not asked again
    assert voice.texts == ["Hello there"]


def test_a_script_that_names_its_engine_keeps_it() -> None:
    voice = ToneVoice()
    cursor = ScriptCursor(parse_script({"tts": "synthetic", "steps": []}), voice=voice)
    speech = asyncio.run(cursor.speech("Hello there"))
    assert speech.engine == "synthetic" and voice.texts == []


def test_the_callers_voice_is_the_platforms_text_to_speech() -> None:
    assistant = memory_context().assistant
    # On AWS, without a key for the assistant's voice provider: no voice, said plainly.
    with pytest.raises(MissingProviderKey):
        caller_voice(assistant, env={})
    # Locally (offline stand-ins allowed): the offline voice the assistant would get.
    local = caller_voice(assistant, env={"TALKTURO_OFFLINE_PROVIDERS": "1"})
    assert isinstance(local, PiperSynthesizer | EspeakSynthesizer)


def test_turn_latency_runs_from_the_end_of_a_line_to_the_next_reply_heard() -> None:
    party = PartyRecord(
        said=[
            {"text": "one", "at": 1.0, "seconds": 1.0},  # ends at 2.0
            {"text": "two", "at": 5.0, "seconds": 0.5},  # ends at 5.5
            {"text": "three", "at": 9.0, "seconds": 0.5},  # no reply before the end
        ],
        heard_onsets=[0.2, 2.4, 3.0, 6.25],
    )
    assert turn_latencies(party) == [400, 750]
