"""The offline speech benchmark's set and its scoring (the figures themselves are the
benchmark's, not asserted)."""

from __future__ import annotations

import asyncio

import jiwer
import pytest

from benchmarks import speech
from talkturo.voice.providers.stt import whisper
from talkturo.voice.providers.tts import piper


def test_the_set_has_forty_distinct_phone_lines_in_words() -> None:
    lines = speech.lines()
    assert len(lines) >= 40 and len(set(lines)) == len(lines)
    assert not any(character.isdigit() for line in lines for character in line)


def test_references_and_transcripts_compare_without_case_and_punctuation() -> None:
    assert speech.normalised("That's all, Goodbye!") == "that's all goodbye"
    assert jiwer.wer("yes that works", speech.normalised("Yes, that works.")) == 0.0
    assert speech.percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert speech.percentile([1.0, 2.0, 3.0, 4.0, 100.0], 0.95) == 100.0


@pytest.mark.skipif(
    not (whisper.available() and piper.available()), reason="the `speech` extra is not installed"
)
def test_two_lines_of_the_set_come_back_as_their_words() -> None:
    texts = speech.lines()[:2]
    audios = [speech.trimmed(piper.speak(text)) for text in texts]

    heard = asyncio.run(speech.transcribe_all("whisper", audios))

    assert [speech.normalised(h) for h in heard] == [speech.normalised(t) for t in texts]
