"""The four streaming transcriber adapters, each through its SDK against a local fake of its
service (tests/providers/fake_stt_servers.py): audio and settings arrive as the provider wants
them, provider messages become the platform's events in order, closing sends the provider's
closing message, and failures surface as ProviderError with the right `retryable`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from talkturo.voice.providers.base import (
    ProviderError,
    SpeechStarted,
    SttEvent,
    TranscriberOptions,
    TranscriberStream,
    Transcript,
    UtteranceEnd,
)
from talkturo.voice.providers.registry import KEY_NAMES, Providers
from talkturo.voice.providers.stt.assemblyai import AssemblyAITranscriber
from talkturo.voice.providers.stt.cartesia import CartesiaTranscriber
from talkturo.voice.providers.stt.deepgram import DeepgramTranscriber
from talkturo.voice.providers.stt.elevenlabs import ElevenLabsTranscriber
from tests.providers.fake_stt_servers import (
    API_KEY,
    AfterAudio,
    CloseWith,
    Drop,
    FakeAssemblyAI,
    FakeCartesia,
    FakeDeepgram,
    FakeElevenLabs,
    FakeSttServer,
    Send,
    Session,
    assemblyai_speech_started,
    assemblyai_turn,
    cartesia_transcript,
    deepgram_results,
    deepgram_speech_started,
    deepgram_utterance_end,
    elevenlabs_committed,
    elevenlabs_partial,
    flux_turn,
)

WAIT = 5.0
KEYTERMS = ("Talkturo", "Acme Corp")


def frames(count: int, seed: int = 0) -> list[bytes]:
    """Distinct 20 ms mu-law frames, so reordered or lost bytes show."""
    return [bytes((seed + n * 31 + i) % 256 for i in range(160)) for n in range(count)]


class Collector:
    """Reads a stream's events in the background, as the call loop does."""

    def __init__(self, stream: TranscriberStream) -> None:
        self.events: list[SttEvent] = []
        self.error: ProviderError | None = None
        self._changed = asyncio.Event()
        self.task = asyncio.create_task(self._read(stream))

    async def _read(self, stream: TranscriberStream) -> None:
        try:
            async for event in stream.events():
                self.events.append(event)
                self._changed.set()
        except ProviderError as exc:
            self.error = exc
        finally:
            self._changed.set()

    async def wait_for(self, count: int) -> list[SttEvent]:
        async with asyncio.timeout(WAIT):
            while len(self.events) < count and not self.task.done():
                self._changed.clear()
                await self._changed.wait()
        assert len(self.events) >= count, f"stream ended after {self.events} ({self.error})"
        return self.events

    async def ended(self) -> None:
        await asyncio.wait_for(asyncio.shield(self.task), WAIT)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 20))


async def send_all(stream: TranscriberStream, chunks: list[bytes]) -> None:
    for chunk in chunks:
        await stream.send(chunk)


async def assert_dropped(
    stream: TranscriberStream, collector: Collector, *, retryable: bool
) -> None:
    """The stream ended with the given kind of error; sending and closing still return."""
    await collector.ended()
    assert collector.error is not None, collector.events
    assert collector.error.retryable is retryable, collector.error
    await asyncio.wait_for(send_all(stream, frames(30)), 1)  # dropped, never blocks
    await asyncio.wait_for(stream.close(), WAIT)
    await asyncio.wait_for(stream.close(), WAIT)
    with pytest.raises(ProviderError):  # a second reader learns the same
        async for _ in stream.events():
            pass


def audio_of(session: Session) -> bytes:
    return bytes(session.audio)


# ============================================================================ Deepgram

NOVA = TranscriberOptions(model="nova-3", language="en", keyterms=KEYTERMS)


def deepgram(fake: FakeSttServer, key: str = API_KEY) -> DeepgramTranscriber:
    return DeepgramTranscriber(api_key=key, base_url=fake.base_url)


def test_deepgram_streams_audio_and_maps_results_in_order() -> None:
    async def scenario() -> None:
        script = [
            AfterAudio(800),
            Send(deepgram_speech_started()),
            Send(deepgram_results("", is_final=False)),  # silence: nothing to report
            Send(deepgram_results("hello", is_final=False)),
            Send(deepgram_results("hello there", is_final=True, speech_final=True)),
            Send(deepgram_results("", is_final=True, speech_final=True)),
            Send(deepgram_utterance_end()),
        ]
        fake = FakeDeepgram(script, on_close=[deepgram_results("goodbye", is_final=True)])
        async with fake:
            stream = await deepgram(fake).open(NOVA)
            collector = Collector(stream)
            audio = frames(50)
            await send_all(stream, audio)
            events = await collector.wait_for(5)
            assert events == [
                SpeechStarted(),
                Transcript("hello", final=False, confidence=0.98),
                Transcript("hello there", final=True, end_of_turn=True, confidence=0.98),
                UtteranceEnd(),  # the empty speech_final result
                UtteranceEnd(),
            ]
            session = await fake.session()
            await session.wait_audio(len(b"".join(audio)))
            await stream.close()
            await collector.ended()
            await session.wait_closed()

        assert collector.error is None
        assert collector.events[-1] == Transcript("goodbye", final=True, confidence=0.98)
        assert audio_of(session) == b"".join(audio)
        assert session.path == "/v1/listen"
        assert session.headers["Authorization"] == f"Token {API_KEY}"
        assert session.param("model") == "nova-3"
        assert session.param("language") == "en"
        assert session.param("endpointing") == "300"
        assert session.param("utterance_end_ms") == "1000"
        assert session.query["keyterm"] == list(KEYTERMS)
        assert "keywords" not in session.query
        assert session.log == ["audio", "CloseStream"]
        assert session.close_code == 1000
        assert fake.problems == []

    run(scenario)


def test_deepgram_older_models_get_keywords_instead_of_keyterms() -> None:
    async def scenario() -> None:
        async with FakeDeepgram() as fake:
            options = TranscriberOptions(model="nova-2", language="es", keyterms=KEYTERMS)
            stream = await deepgram(fake).open(options)
            session = await fake.session()
            await stream.close()
            await session.wait_closed()
        assert session.query["keywords"] == list(KEYTERMS)
        assert "keyterm" not in session.query
        assert session.param("language") == "es"
        assert session.log == ["CloseStream"]
        assert fake.problems == []

    run(scenario)


def test_deepgram_flux_models_use_listen_v2_turns() -> None:
    async def scenario() -> None:
        script = [
            AfterAudio(1600),
            Send(flux_turn("StartOfTurn", "")),
            Send(flux_turn("Update", "book a")),
            Send(flux_turn("EagerEndOfTurn", "book a table")),
            Send(flux_turn("TurnResumed", "book a table")),
            Send(flux_turn("EndOfTurn", "Book a table for two.")),
        ]
        async with FakeDeepgram(script) as fake:
            options = TranscriberOptions(model="flux-general-en", language="en", keyterms=KEYTERMS)
            stream = await deepgram(fake).open(options)
            collector = Collector(stream)
            await send_all(stream, frames(10))
            events = await collector.wait_for(4)
            await stream.close()
            await collector.ended()
            session = await fake.session()
        assert events == [
            SpeechStarted(),
            Transcript("book a", final=False),
            Transcript("book a table", final=False),
            Transcript("Book a table for two.", final=True, end_of_turn=True),
        ]
        assert collector.error is None
        assert session.path == "/v2/listen"
        assert session.param("model") == "flux-general-en"
        assert session.query["keyterm"] == list(KEYTERMS)
        assert session.log == ["audio", "CloseStream"]
        assert fake.problems == []

    run(scenario)


def test_deepgram_dropped_connection_is_a_retryable_error() -> None:
    async def scenario() -> None:
        script = [AfterAudio(480), Send(deepgram_results("hel", is_final=False)), Drop()]
        async with FakeDeepgram(script) as fake:
            stream = await deepgram(fake).open(NOVA)
            collector = Collector(stream)
            await send_all(stream, frames(3))
            await assert_dropped(stream, collector, retryable=True)
        assert collector.events == [Transcript("hel", final=False, confidence=0.98)]

    run(scenario)


@pytest.mark.parametrize(
    ("code", "retryable"),
    [(1011, True), (1008, False), (1000, True)],  # NET-0001 timeout, DATA-0000, unasked close
)
def test_deepgram_server_close_codes(code: int, retryable: bool) -> None:
    async def scenario() -> None:
        async with FakeDeepgram([AfterAudio(160), CloseWith(code, "closing")]) as fake:
            stream = await deepgram(fake).open(NOVA)
            collector = Collector(stream)
            await send_all(stream, frames(1))
            await assert_dropped(stream, collector, retryable=retryable)
        assert collector.error is not None
        assert str(code) in collector.error.message

    run(scenario)


def test_deepgram_refused_key_is_not_retryable() -> None:
    async def scenario() -> None:
        async with FakeDeepgram() as fake:
            with pytest.raises(ProviderError) as caught:
                await deepgram(fake, key="wrong").open(NOVA)
        assert caught.value.retryable is False
        assert "401" in caught.value.message
        assert "wrong" not in str(caught.value)
        assert fake.refused == 1

    run(scenario)


# ============================================================================ AssemblyAI

UNIVERSAL = TranscriberOptions(
    model="universal-streaming-english", language="en", keyterms=KEYTERMS
)


def assemblyai(fake: FakeSttServer, key: str = API_KEY) -> AssemblyAITranscriber:
    return AssemblyAITranscriber(api_key=key, base_url=fake.base_url)


def test_assemblyai_streams_chunks_and_maps_turns_in_order() -> None:
    async def scenario() -> None:
        script = [
            AfterAudio(800),
            Send(assemblyai_speech_started()),
            Send(assemblyai_turn("")),
            Send(assemblyai_turn("hi my")),
            Send(assemblyai_turn("hi my name is sonny", end_of_turn=True)),
            Send(assemblyai_turn("Hi, my name is Sonny.", end_of_turn=True, formatted=True)),
        ]
        fake = FakeAssemblyAI(script, on_close=[assemblyai_turn("bye", turn_order=1)])
        async with fake:
            stream = await assemblyai(fake).open(UNIVERSAL)
            collector = Collector(stream)
            audio = frames(27)  # 540 ms: five 100 ms messages and a 40 ms tail
            await send_all(stream, audio)
            events = await collector.wait_for(4)
            session = await fake.session()
            await session.wait_audio(800 * 5)
            await stream.close()
            await collector.ended()
            await session.wait_closed()

        assert events[:4] == [
            SpeechStarted(),
            Transcript("hi my", final=False),
            Transcript("hi my name is sonny", final=False),
            Transcript("Hi, my name is Sonny.", final=True, end_of_turn=True, confidence=0.9),
        ]
        assert events[4:] == [Transcript("bye", final=False)]
        assert collector.error is None
        sent = b"".join(audio)
        # 100 ms messages; the tail padded with silence to the 50 ms AssemblyAI accepts.
        assert session.chunk_sizes == [800, 800, 800, 800, 800, 400]
        assert audio_of(session) == sent + b"\xff" * 80
        assert session.headers["Authorization"] == API_KEY
        assert session.param("speech_model") == "universal-streaming-english"
        assert json.loads(session.param("keyterms_prompt") or "") == list(KEYTERMS)
        assert session.log == ["audio", "Terminate"]
        assert session.close_code == 1000
        assert fake.problems == []

    run(scenario)


def test_assemblyai_unformatted_end_of_turn_is_final_when_no_copy_follows() -> None:
    async def scenario() -> None:
        turn = assemblyai_turn("see you tomorrow", end_of_turn=True)
        async with FakeAssemblyAI(on_close=[turn]) as fake:
            stream = await assemblyai(fake).open(UNIVERSAL)
            collector = Collector(stream)
            await send_all(stream, frames(5))
            await stream.close()
            await collector.ended()
        assert collector.events == [
            Transcript("see you tomorrow", final=False),
            Transcript("see you tomorrow", final=True, end_of_turn=True, confidence=0.9),
        ]
        assert collector.error is None
        assert fake.problems == []

    run(scenario)


def test_assemblyai_long_chunks_are_split_within_its_limits() -> None:
    async def scenario() -> None:
        async with FakeAssemblyAI() as fake:
            stream = await assemblyai(fake).open(UNIVERSAL)
            audio = b"".join(frames(75))  # 1.5 s in one piece: more than one message may hold
            await stream.send(audio)
            await stream.close()
            session = await fake.session()
            await session.wait_closed()
        assert session.chunk_sizes == [800] * 15
        assert audio_of(session) == audio
        assert fake.problems == []

    run(scenario)


def test_assemblyai_dropped_connection_is_a_retryable_error() -> None:
    async def scenario() -> None:
        async with FakeAssemblyAI([AfterAudio(800), Send(assemblyai_turn("hel")), Drop()]) as fake:
            stream = await assemblyai(fake).open(UNIVERSAL)
            collector = Collector(stream)
            await send_all(stream, frames(5))
            await assert_dropped(stream, collector, retryable=True)
        assert collector.events == [Transcript("hel", final=False)]

    run(scenario)


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        ({"error_code": 3005, "error": "Session Cancelled: An error occurred"}, True),
        (
            {"error_code": 1008, "error": "Unauthorized Connection: Too many concurrent sessions"},
            True,
        ),
        ({"error_code": 3007, "error": "Input duration violation: 10 ms"}, False),
    ],
)
def test_assemblyai_error_messages(error: dict[str, Any], retryable: bool) -> None:
    async def scenario() -> None:
        script = [
            AfterAudio(800),
            Send({"type": "Error", **error}),
            CloseWith(error["error_code"], error["error"]),
        ]
        async with FakeAssemblyAI(script) as fake:
            stream = await assemblyai(fake).open(UNIVERSAL)
            collector = Collector(stream)
            await send_all(stream, frames(5))
            await assert_dropped(stream, collector, retryable=retryable)
        assert collector.error is not None
        assert str(error["error_code"]) in collector.error.message

    run(scenario)


@pytest.mark.parametrize(
    "ending",
    [
        [Send({"type": "Termination", "audio_duration_seconds": 0})],
        [],  # a clean close with no Termination at all
    ],
)
def test_assemblyai_session_ended_by_the_server_is_a_retryable_error(ending: list[Any]) -> None:
    async def scenario() -> None:
        script = [AfterAudio(800), Send(assemblyai_turn("so", end_of_turn=True)), *ending]
        async with FakeAssemblyAI([*script, CloseWith(1000)]) as fake:
            stream = await assemblyai(fake).open(UNIVERSAL)
            collector = Collector(stream)
            await send_all(stream, frames(5))
            await assert_dropped(stream, collector, retryable=True)
        # The unformatted end of turn still counts once no formatted copy can come.
        assert collector.events == [
            Transcript("so", final=False),
            Transcript("so", final=True, end_of_turn=True, confidence=0.9),
        ]

    run(scenario)


def test_assemblyai_refused_key_is_not_retryable() -> None:
    async def scenario() -> None:
        async with FakeAssemblyAI() as fake:
            with pytest.raises(ProviderError) as caught:
                await assemblyai(fake, key="wrong").open(UNIVERSAL)
        assert caught.value.retryable is False
        assert "1008" in caught.value.message
        assert "wrong" not in str(caught.value)

    run(scenario)


def test_assemblyai_unknown_model_is_refused_before_connecting() -> None:
    async def scenario() -> None:
        async with FakeAssemblyAI() as fake:
            options = TranscriberOptions(model="no-such-model", language="en")
            with pytest.raises(ProviderError) as caught:
                await assemblyai(fake).open(options)
        assert caught.value.retryable is False
        assert fake.sessions == []

    run(scenario)


# ============================================================================ Cartesia

INK = TranscriberOptions(model="ink-whisper", language="de", keyterms=KEYTERMS)


def cartesia(fake: FakeSttServer, key: str = API_KEY) -> CartesiaTranscriber:
    return CartesiaTranscriber(api_key=key, base_url=fake.base_url)


def test_cartesia_streams_chunks_and_maps_transcripts_in_order() -> None:
    async def scenario() -> None:
        script = [
            AfterAudio(1600),
            Send(cartesia_transcript(" Guten", is_final=False)),
            Send(cartesia_transcript(" Guten Tag.", is_final=True)),
            Send(cartesia_transcript("", is_final=True)),
            Send(cartesia_transcript(" Wie", is_final=False)),
        ]
        fake = FakeCartesia(script, on_close=[cartesia_transcript(" Wie geht's?", is_final=True)])
        async with fake:
            stream = await cartesia(fake).open(INK)
            collector = Collector(stream)
            audio = frames(12)  # 240 ms: two 100 ms chunks, a 40 ms tail sent on close
            await send_all(stream, audio)
            events = await collector.wait_for(4)
            session = await fake.session()
            await stream.close()
            await collector.ended()
            await session.wait_closed()

        assert events[:4] == [
            Transcript("Guten", final=False),
            Transcript("Guten Tag.", final=True, end_of_turn=True),
            UtteranceEnd(),
            Transcript("Wie", final=False),
        ]
        assert events[4:] == [Transcript("Wie geht's?", final=True, end_of_turn=True)]
        assert collector.error is None
        assert session.chunk_sizes == [800, 800, 320]
        assert audio_of(session) == b"".join(audio)
        assert session.headers["Authorization"] == f"Bearer {API_KEY}"
        assert session.param("model") == "ink-whisper"
        assert session.param("encoding") == "pcm_mulaw"
        assert session.param("sample_rate") == "8000"
        assert session.param("language") == "de"
        assert session.query["keyterm"] == list(KEYTERMS)
        assert session.log == ["audio", "close"]
        assert session.close_code == 1000
        assert fake.problems == []

    run(scenario)


def test_cartesia_dropped_connection_is_a_retryable_error() -> None:
    async def scenario() -> None:
        script = [AfterAudio(800), Send(cartesia_transcript("Hal", is_final=False)), Drop()]
        async with FakeCartesia(script) as fake:
            stream = await cartesia(fake).open(INK)
            collector = Collector(stream)
            await send_all(stream, frames(5))
            await assert_dropped(stream, collector, retryable=True)
        assert collector.events == [Transcript("Hal", final=False)]

    run(scenario)


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (400, False)])
def test_cartesia_error_messages(status: int, retryable: bool) -> None:
    async def scenario() -> None:
        error = {
            "type": "error",
            "status_code": status,
            "title": "Failure",
            "message": "Something went wrong.",
            "request_id": "fake-request",
        }
        async with FakeCartesia([AfterAudio(800), Send(error)]) as fake:
            stream = await cartesia(fake).open(INK)
            collector = Collector(stream)
            await send_all(stream, frames(5))
            await assert_dropped(stream, collector, retryable=retryable)
        assert collector.error is not None
        assert "Something went wrong." in collector.error.message

    run(scenario)


def test_cartesia_refused_key_is_not_retryable() -> None:
    async def scenario() -> None:
        async with FakeCartesia() as fake:
            with pytest.raises(ProviderError) as caught:
                await cartesia(fake, key="wrong").open(INK)
        assert caught.value.retryable is False
        assert "401" in caught.value.message
        assert fake.refused == 1

    run(scenario)


# ============================================================================ ElevenLabs

SCRIBE = TranscriberOptions(model="scribe_v2_realtime", language="en", keyterms=KEYTERMS)


def elevenlabs(fake: FakeSttServer, key: str = API_KEY) -> ElevenLabsTranscriber:
    return ElevenLabsTranscriber(api_key=key, base_url=fake.base_url)


def test_elevenlabs_streams_chunks_and_maps_transcripts_in_order() -> None:
    async def scenario() -> None:
        script = [
            AfterAudio(800),
            Send(elevenlabs_partial("hello")),
            Send(elevenlabs_committed("Hello there.")),
            Send(elevenlabs_committed("")),
            Send(elevenlabs_partial("how")),
        ]
        async with FakeElevenLabs(script) as fake:
            stream = await elevenlabs(fake).open(SCRIBE)
            collector = Collector(stream)
            audio = frames(12)
            await send_all(stream, audio)
            events = await collector.wait_for(4)
            session = await fake.session()
            await session.wait_audio(1600)
            await stream.close()
            await collector.ended()
            await session.wait_closed()

        assert events == [
            Transcript("hello", final=False),
            Transcript("Hello there.", final=True, end_of_turn=True),
            UtteranceEnd(),
            Transcript("how", final=False),
        ]
        assert collector.error is None
        assert session.chunk_sizes == [800, 800, 320]  # the tail goes out before the close
        assert audio_of(session) == b"".join(audio)
        assert session.headers["xi-api-key"] == API_KEY
        assert session.param("model_id") == "scribe_v2_realtime"
        assert session.param("audio_format") == "ulaw_8000"
        assert session.param("commit_strategy") == "vad"
        assert session.param("vad_silence_threshold_secs") == "0.5"
        assert session.param("language_code") == "en"
        assert session.query["keyterms"] == list(KEYTERMS)
        assert session.log == ["audio"]
        assert session.close_code == 1000
        assert fake.problems == []

    run(scenario)


def test_elevenlabs_dropped_connection_is_a_retryable_error() -> None:
    async def scenario() -> None:
        async with FakeElevenLabs(
            [AfterAudio(800), Send(elevenlabs_partial("hel")), Drop()]
        ) as fake:
            stream = await elevenlabs(fake).open(SCRIBE)
            collector = Collector(stream)
            await send_all(stream, frames(5))
            await assert_dropped(stream, collector, retryable=True)
        assert collector.events == [Transcript("hel", final=False)]

    run(scenario)


@pytest.mark.parametrize(("kind", "retryable"), [("rate_limited", True), ("quota_exceeded", False)])
def test_elevenlabs_error_messages(kind: str, retryable: bool) -> None:
    async def scenario() -> None:
        script = [
            AfterAudio(800),
            Send({"message_type": kind, "error": "Too much."}),
            CloseWith(1008, kind),
        ]
        async with FakeElevenLabs(script) as fake:
            stream = await elevenlabs(fake).open(SCRIBE)
            collector = Collector(stream)
            await send_all(stream, frames(5))
            await assert_dropped(stream, collector, retryable=retryable)
        assert collector.error is not None
        assert kind in collector.error.message

    run(scenario)


def test_elevenlabs_refused_key_is_not_retryable() -> None:
    async def scenario() -> None:
        async with FakeElevenLabs() as fake:
            with pytest.raises(ProviderError) as caught:
                await elevenlabs(fake, key="wrong").open(SCRIBE)
        assert caught.value.retryable is False
        assert "auth_error" in caught.value.message
        assert "wrong" not in str(caught.value)

    run(scenario)


# ============================================================================ all four

ADAPTERS: dict[str, tuple[type[FakeSttServer], TranscriberOptions]] = {
    "deepgram": (FakeDeepgram, NOVA),
    "assemblyai": (FakeAssemblyAI, UNIVERSAL),
    "cartesia": (FakeCartesia, INK),
    "elevenlabs": (FakeElevenLabs, SCRIBE),
}


@pytest.mark.parametrize("provider", sorted(ADAPTERS))
def test_registry_builds_each_adapter_from_key_and_base_url(provider: str) -> None:
    fake_class, options = ADAPTERS[provider]

    async def scenario() -> None:
        async with fake_class() as fake:
            env = {KEY_NAMES[provider]: API_KEY, f"{provider.upper()}_BASE_URL": fake.base_url}
            transcriber = Providers(env).transcriber(provider)
            assert transcriber.provider == provider
            stream = await transcriber.open(options)
            collector = Collector(stream)
            await send_all(stream, frames(10))
            session = await fake.session()
            await session.wait_audio(1600)
            await stream.close()
            await collector.ended()
            await session.wait_closed()
        assert collector.error is None
        assert audio_of(session) == b"".join(frames(10))
        assert fake.problems == []

    run(scenario)


@pytest.mark.parametrize(
    ("provider", "status", "retryable"),
    [
        (provider, status, retryable)
        for provider in sorted(ADAPTERS)
        for status, retryable in ((429, True), (503, True), (403, False))
    ],
)
def test_refused_upgrade_maps_the_status(provider: str, status: int, retryable: bool) -> None:
    fake_class, options = ADAPTERS[provider]

    async def scenario() -> None:
        async with fake_class(refuse_with=status) as fake:
            transcriber = Providers(
                {KEY_NAMES[provider]: API_KEY, f"{provider.upper()}_BASE_URL": fake.base_url}
            ).transcriber(provider)
            with pytest.raises(ProviderError) as caught:
                await transcriber.open(options)
        assert caught.value.retryable is retryable
        assert str(status) in caught.value.message
        assert fake.refused == 1  # tried once: retrying is the call loop's decision

    run(scenario)


@pytest.mark.parametrize("provider", sorted(ADAPTERS))
def test_unreachable_service_is_retryable(provider: str) -> None:
    fake_class, options = ADAPTERS[provider]

    async def scenario() -> None:
        async with fake_class() as fake:
            base_url = fake.base_url  # a port nobody listens on once the fake stopped
        transcriber = Providers(
            {KEY_NAMES[provider]: API_KEY, f"{provider.upper()}_BASE_URL": base_url}
        ).transcriber(provider)
        with pytest.raises(ProviderError) as caught:
            await transcriber.open(options)
        assert caught.value.retryable is True

    run(scenario)
