"""The voice (TTS) adapters, each built by the registry and driven through its official SDK
against a local fake of the provider's streaming API (tests/providers/fake_tts_servers.py)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

import numpy as np
import pytest

from talkturo.audio import mulaw_to_pcm16
from talkturo.voice.providers.base import ProviderError, Synthesizer, VoiceOptions
from talkturo.voice.providers.registry import KEY_NAMES, Providers
from talkturo.voice.providers.tts.dashscope import endpoints
from tests.asgi_server import served
from tests.providers.fake_tts_servers import (
    API_KEY,
    Fake,
    FakeCartesia,
    FakeDashScope,
    FakeElevenLabs,
    FakeOpenAI,
)

WAIT = 15.0  # only a failing test waits it out; a loaded CI machine is slow
TEXT = "Thanks for calling Acme, how can I help?"
F = TypeVar("F", bound=Fake)


# --------------------------------------------------------------------------- helpers


def run(scenario: Any) -> Any:
    return asyncio.run(asyncio.wait_for(scenario, 20))


async def until(event: threading.Event) -> bool:
    return await asyncio.to_thread(event.wait, WAIT)


async def next_chunk(stream: AsyncIterator[bytes]) -> bytes:
    return await asyncio.wait_for(anext(stream), WAIT)


async def rest(stream: AsyncIterator[bytes]) -> list[bytes]:
    chunks = []
    async with asyncio.timeout(WAIT):
        async for chunk in stream:
            chunks.append(chunk)
    return chunks


async def stepwise(stream: AsyncIterator[bytes], fake: Fake) -> list[bytes]:
    """Each chunk reaches the caller before the fake is allowed to send the next one."""
    chunks = [await next_chunk(stream)]
    assert fake.sent == 1
    for index in range(1, len(fake.chunks)):
        fake.gate.allow()
        chunks.append(await next_chunk(stream))
        assert fake.sent == index + 1
    assert await rest(stream) == []
    return chunks


def synthesizer(
    provider: str, fake: Fake, options: VoiceOptions, *, key: str = API_KEY
) -> Synthesizer:
    base_url = fake.url + ("/v1" if provider == "openai" else "")
    env = {KEY_NAMES[provider]: key, f"{provider.upper()}_BASE_URL": base_url}
    return Providers(env).synthesizer(provider, options)


@contextlib.contextmanager
def serving(fake: F) -> Iterator[F]:
    with served(fake.app) as url:
        fake.url = url
        yield fake


def sine_pcm(rate: int, seconds: float, frequency: float, amplitude: int = 8000) -> bytes:
    t = np.arange(round(rate * seconds)) / rate
    return (amplitude * np.sin(2 * math.pi * frequency * t)).astype("<i2").tobytes()


def split(data: bytes, sizes: list[int]) -> list[bytes]:
    """`data` cut at the given sizes (odd ones on purpose), the remainder last."""
    chunks, start = [], 0
    for size in sizes:
        chunks.append(data[start : start + size])
        start += size
    return [*chunks, data[start:]]


def decoded(mulaw: bytes) -> np.ndarray:
    return np.frombuffer(mulaw_to_pcm16(mulaw), dtype="<i2").astype(float)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def assert_sine_at_8k(mulaw: bytes, *, source_seconds: float, frequency: float) -> None:
    """Telephone audio of the fake's sine: the right length, loudness and pitch."""
    samples = decoded(mulaw)
    assert abs(len(samples) - source_seconds * 8000) <= 8
    rms = float(np.sqrt(np.mean(samples[40:-40] ** 2)))
    assert 8000 / math.sqrt(2) * 0.9 < rms < 8000 / math.sqrt(2) * 1.1
    assert abs(dominant_frequency(samples, 8000) - frequency) < 15


# --------------------------------------------------------------------------- fakes


@pytest.fixture(scope="module")
def cartesia_server() -> Iterator[FakeCartesia]:
    with serving(FakeCartesia()) as fake:
        yield fake


@pytest.fixture(scope="module")
def elevenlabs_server() -> Iterator[FakeElevenLabs]:
    with serving(FakeElevenLabs()) as fake:
        yield fake


@pytest.fixture(scope="module")
def openai_server() -> Iterator[FakeOpenAI]:
    with serving(FakeOpenAI()) as fake:
        yield fake


@pytest.fixture(scope="module")
def dashscope_server() -> Iterator[FakeDashScope]:
    with serving(FakeDashScope()) as fake:
        yield fake


# ============================================================================ Cartesia

SONIC = VoiceOptions(
    model="sonic-3", voice_id="e00d0e4c-a5c8-443f-a8a3-473eb9a62355", speed=1.2, language="en-US"
)


def test_cartesia_request_and_streamed_mulaw(cartesia_server: FakeCartesia) -> None:
    fake = cartesia_server
    fake.reset(hold=True)

    async def scenario() -> list[bytes]:
        voice = synthesizer("cartesia", fake, SONIC)
        try:
            return await stepwise(voice.synthesize(TEXT), fake)
        finally:
            await voice.close()

    assert run(scenario()) == fake.chunks  # mu-law passes through byte for byte, in order
    assert fake.handshakes == [
        {"authorization": f"Bearer {API_KEY}", "cartesia_version": "2026-08-14"}
    ]
    [request] = fake.requests
    assert request["transcript"] == TEXT
    assert request["model_id"] == "sonic-3"
    assert request["voice"] == {"mode": "id", "id": SONIC.voice_id}
    assert request["output_format"] == {
        "container": "raw",
        "encoding": "pcm_mulaw",
        "sample_rate": 8000,
    }
    assert request["language"] == "en"
    assert request["generation_config"] == {"speed": 1.2}
    assert request["continue"] is False
    assert fake.violations == []


def test_cartesia_one_connection_many_contexts_and_close(cartesia_server: FakeCartesia) -> None:
    fake = cartesia_server
    fake.reset()

    async def scenario() -> list[list[bytes]]:
        voice = synthesizer("cartesia", fake, SONIC)
        first = await rest(voice.synthesize("One."))
        second = await rest(voice.synthesize("Two."))
        assert not fake.disconnected.is_set()
        await voice.close()
        assert await until(fake.disconnected)  # close() closed the websocket
        return [first, second]

    assert run(scenario()) == [fake.chunks, fake.chunks]
    assert fake.connections == 1
    contexts = [request["context_id"] for request in fake.requests]
    assert [request["transcript"] for request in fake.requests] == ["One.", "Two."]
    assert len(set(contexts)) == 2


def test_cartesia_cancel_cancels_the_context_and_keeps_the_connection(
    cartesia_server: FakeCartesia,
) -> None:
    fake = cartesia_server
    fake.reset(hold=True)

    async def scenario() -> list[bytes]:
        voice = synthesizer("cartesia", fake, SONIC)
        first_chunk = asyncio.Event()

        async def speak() -> None:
            async for _chunk in voice.synthesize("A long answer that gets interrupted."):
                first_chunk.set()

        speaking = asyncio.create_task(speak())
        await asyncio.wait_for(first_chunk.wait(), WAIT)
        speaking.cancel()  # the caller barged in
        with pytest.raises(asyncio.CancelledError):
            await speaking
        assert await until(fake.cancelled)
        fake.hold = False
        after = await rest(voice.synthesize("Sure, go ahead."))
        await voice.close()
        return after

    assert run(scenario()) == fake.chunks
    assert fake.connections == 1  # the next text used the same websocket
    interrupted, _following = (request["context_id"] for request in fake.requests)
    assert fake.cancelled_contexts == [interrupted]
    assert fake.messages[1] == {"context_id": interrupted, "cancel": True}
    assert fake.sent == 1 + len(fake.chunks)


def test_cartesia_auth_failure_is_not_retryable(cartesia_server: FakeCartesia) -> None:
    fake = cartesia_server
    fake.reset()

    async def scenario() -> None:
        voice = synthesizer("cartesia", fake, SONIC, key="wrong-key")
        try:
            with pytest.raises(ProviderError) as failure:
                await rest(voice.synthesize(TEXT))
            assert failure.value.retryable is False
            assert "401" in failure.value.message
        finally:
            await voice.close()

    run(scenario())
    assert fake.handshakes[0]["authorization"] == "Bearer wrong-key"
    assert fake.connections == 0


@pytest.mark.parametrize("fail", ["server_error", "rate_limit", "drop"])
def test_cartesia_provider_failures_are_retryable(cartesia_server: FakeCartesia, fail: str) -> None:
    fake = cartesia_server
    fake.reset(fail=fail)

    async def scenario() -> list[bytes]:
        voice = synthesizer("cartesia", fake, SONIC)
        got: list[bytes] = []
        with pytest.raises(ProviderError) as failure:
            async for chunk in voice.synthesize(TEXT):
                got.append(chunk)
        assert failure.value.retryable is True
        if fail == "drop":
            # The next text opens a new connection instead of hanging on the dead one.
            fake.fail = None
            assert await rest(voice.synthesize("Again.")) == fake.chunks
            assert fake.connections == 2
        await voice.close()
        return got

    assert run(scenario()) == fake.chunks[:1]


def test_cartesia_error_event_for_a_bad_request_is_not_retryable(
    cartesia_server: FakeCartesia,
) -> None:
    fake = cartesia_server
    fake.reset()

    async def scenario() -> None:
        voice = synthesizer("cartesia", fake, VoiceOptions(model="sonic-3", voice_id=""))
        with pytest.raises(ProviderError) as failure:
            await rest(voice.synthesize(TEXT))
        assert failure.value.retryable is False
        assert "Invalid request" in failure.value.message
        await voice.close()

    run(scenario())
    assert fake.violations == ["voice needs an id"]


# ============================================================================ ElevenLabs

FLASH = VoiceOptions(
    model="eleven_flash_v2_5",
    voice_id="21m00Tcm4TlvDq8ikWAM",
    speed=1.1,
    language="en-GB",
    extra={"stability": 0.4},
)


def test_elevenlabs_request_and_streamed_mulaw(elevenlabs_server: FakeElevenLabs) -> None:
    fake = elevenlabs_server
    fake.reset(hold=True)

    async def scenario() -> list[bytes]:
        voice = synthesizer("elevenlabs", fake, FLASH)
        try:
            stream = voice.synthesize(TEXT)
            chunks = [await next_chunk(stream)]
            assert fake.sent == 1  # the first audio is out before the provider is done
            fake.gate.allow(len(fake.chunks) - 1)
            return chunks + await rest(stream)
        finally:
            await voice.close()

    assert b"".join(run(scenario())) == b"".join(fake.chunks)
    [request] = fake.requests
    assert request["voice_id"] == FLASH.voice_id
    assert request["api_key"] == API_KEY
    assert request["query"] == {"output_format": "ulaw_8000"}
    body = request["body"]
    assert body["text"] == TEXT
    assert body["model_id"] == "eleven_flash_v2_5"
    assert body["language_code"] == "en"
    assert body["voice_settings"]["speed"] == 1.1
    assert body["voice_settings"]["stability"] == 0.4
    assert fake.violations == []


def test_elevenlabs_cancel_closes_the_stream_and_close_closes_the_client(
    elevenlabs_server: FakeElevenLabs,
) -> None:
    fake = elevenlabs_server
    fake.reset(hold=True)

    async def scenario() -> None:
        voice = synthesizer("elevenlabs", fake, FLASH)
        stream = voice.synthesize(TEXT)
        assert await next_chunk(stream) == fake.chunks[0]
        await stream.aclose()
        assert await until(fake.cancelled)
        assert not fake.finished.is_set()
        await voice.close()
        assert voice._http.is_closed

    run(scenario())
    assert fake.sent == 1


@pytest.mark.parametrize(
    ("key", "fail", "retryable"),
    [
        ("wrong-key", None, False),
        (API_KEY, "server_error", True),
        (API_KEY, "rate_limit", True),
        (API_KEY, "drop", True),
    ],
)
def test_elevenlabs_failures(
    elevenlabs_server: FakeElevenLabs, key: str, fail: str | None, retryable: bool
) -> None:
    fake = elevenlabs_server
    fake.reset(fail=fail)

    async def scenario() -> None:
        voice = synthesizer("elevenlabs", fake, FLASH, key=key)
        with pytest.raises(ProviderError) as failure:
            await rest(voice.synthesize(TEXT))
        assert failure.value.retryable is retryable
        assert failure.value.provider == "elevenlabs"
        await voice.close()

    run(scenario())
    assert fake.requests[0]["api_key"] == key


def test_elevenlabs_leaves_out_what_the_model_refuses_or_the_voice_already_has(
    elevenlabs_server: FakeElevenLabs,
) -> None:
    fake = elevenlabs_server
    fake.reset()
    options = VoiceOptions(model="eleven_multilingual_v2", voice_id="v", language="de")

    async def scenario() -> None:
        voice = synthesizer("elevenlabs", fake, options)
        await rest(voice.synthesize(TEXT))
        await voice.close()

    run(scenario())
    body = fake.requests[0]["body"]
    assert "language_code" not in body  # eleven_multilingual_v2 refuses it
    assert "voice_settings" not in body  # nothing changed: the voice's stored settings apply


# ============================================================================ OpenAI

MINI_TTS = VoiceOptions(
    model="gpt-4o-mini-tts", voice_id="marin", speed=1.25, extra={"instructions": "Warm."}
)
OPENAI_PCM = sine_pcm(24000, 0.3, 440)  # what the fake "speaks": 300 ms of a 440 Hz tone


def test_openai_request_and_pcm_converted_to_mulaw(openai_server: FakeOpenAI) -> None:
    fake = openai_server
    # Odd cuts: a sample's two bytes land in different chunks.
    fake.reset(split(OPENAI_PCM, [3001, 4000, 3999]), hold=True)

    async def scenario() -> list[bytes]:
        voice = synthesizer("openai", fake, MINI_TTS)
        try:
            stream = voice.synthesize(TEXT)
            chunks = [await next_chunk(stream)]
            assert fake.sent == 1
            fake.gate.allow(len(fake.chunks) - 1)
            return chunks + await rest(stream)
        finally:
            await voice.close()

    chunks = run(scenario())
    assert len(chunks) >= 2
    assert_sine_at_8k(b"".join(chunks), source_seconds=0.3, frequency=440)
    [request] = fake.requests
    assert request["authorization"] == f"Bearer {API_KEY}"
    assert request["body"] == {
        "model": "gpt-4o-mini-tts",
        "input": TEXT,
        "voice": "marin",
        "response_format": "pcm",
        "speed": 1.25,
        "instructions": "Warm.",
    }
    assert fake.violations == []


def test_openai_cancel_closes_the_stream_and_close_closes_the_client(
    openai_server: FakeOpenAI,
) -> None:
    fake = openai_server
    fake.reset(split(OPENAI_PCM, [4800, 4800]), hold=True)

    async def scenario() -> None:
        voice = synthesizer("openai", fake, MINI_TTS)
        stream = voice.synthesize(TEXT)
        await next_chunk(stream)
        await stream.aclose()
        assert await until(fake.cancelled)
        await voice.close()
        assert voice._client.is_closed()

    run(scenario())
    assert fake.sent == 1 and not fake.finished.is_set()


@pytest.mark.parametrize(
    ("key", "fail", "retryable"),
    [
        ("wrong-key", None, False),
        (API_KEY, "server_error", True),
        (API_KEY, "rate_limit", True),
        (API_KEY, "drop", True),
    ],
)
def test_openai_failures(
    openai_server: FakeOpenAI, key: str, fail: str | None, retryable: bool
) -> None:
    fake = openai_server
    fake.reset(split(OPENAI_PCM, [4800, 4800]), fail=fail)

    async def scenario() -> None:
        voice = synthesizer("openai", fake, MINI_TTS, key=key)
        with pytest.raises(ProviderError) as failure:
            await rest(voice.synthesize(TEXT))
        assert failure.value.retryable is retryable
        await voice.close()

    run(scenario())
    assert len(fake.requests) == 1  # no silent SDK retries: the loop decides


# ============================================================================ DashScope

COSYVOICE = VoiceOptions(
    model="cosyvoice-v2", voice_id="longxiaochun_v2", speed=1.3, language="zh-CN"
)
COSY_PCM = sine_pcm(8000, 0.3, 300)


def test_dashscope_endpoints_from_base_url() -> None:
    assert endpoints(None) == (
        "wss://dashscope-intl.aliyuncs.com/api-ws/v1/inference",
        "https://dashscope-intl.aliyuncs.com/api/v1",
    )
    assert endpoints("http://127.0.0.1:8123") == (
        "ws://127.0.0.1:8123/api-ws/v1/inference",
        "http://127.0.0.1:8123/api/v1",
    )
    assert endpoints("wss://dashscope.aliyuncs.com/api-ws/v1/inference") == (
        "wss://dashscope.aliyuncs.com/api-ws/v1/inference",
        "https://dashscope.aliyuncs.com/api/v1",
    )


def test_dashscope_cosyvoice_request_and_pcm_converted_to_mulaw(
    dashscope_server: FakeDashScope,
) -> None:
    fake = dashscope_server
    fake.reset(split(COSY_PCM, [801, 800]), hold=True)

    async def scenario() -> list[bytes]:
        voice = synthesizer("dashscope", fake, COSYVOICE)
        try:
            return await stepwise(voice.synthesize(TEXT), fake)
        finally:
            await voice.close()

    chunks = run(scenario())
    assert len(chunks) == 3
    # 8 kHz PCM → mu-law without resampling: each sample within mu-law's quantisation step.
    source = np.frombuffer(COSY_PCM, dtype="<i2").astype(float)
    assert np.max(np.abs(decoded(b"".join(chunks)) - source)) <= 8000 * 0.04
    assert fake.handshakes == [{"authorization": f"Bearer {API_KEY}"}]
    [run_task] = fake.requests
    parameters = run_task["payload"]["parameters"]
    assert run_task["payload"]["model"] == "cosyvoice-v2"
    assert parameters["voice"] == "longxiaochun_v2"
    assert (parameters["format"], parameters["sample_rate"]) == ("pcm", 8000)
    assert parameters["rate"] == 1.3
    assert parameters["language_hints"] == ["zh"]
    assert fake.texts == [TEXT]
    actions = [message["header"]["action"] for message in fake.messages]
    assert actions == ["run-task", "continue-task", "finish-task"]
    task_ids = {message["header"]["task_id"] for message in fake.messages}
    assert len(task_ids) == 1
    assert fake.violations == []


def test_dashscope_cosyvoice_cancel_stops_the_task(dashscope_server: FakeDashScope) -> None:
    fake = dashscope_server
    fake.reset(split(COSY_PCM, [800, 800]), hold=True)

    async def scenario() -> None:
        voice = synthesizer("dashscope", fake, COSYVOICE)
        stream = voice.synthesize(TEXT)
        await next_chunk(stream)
        await stream.aclose()
        assert await until(fake.cancelled)
        await voice.close()
        assert await until(fake.disconnected)

    run(scenario())
    assert fake.sent == 1 and not fake.finished.is_set()
    finish = fake.messages[-1]
    assert finish["header"]["action"] == "finish-task"
    assert finish["payload"]["input"] == {"directive": "cancel"}


@pytest.mark.parametrize(
    ("key", "fail", "retryable", "code"),
    [
        ("wrong-key", None, False, "InvalidApiKey"),
        (API_KEY, "server_error", True, "InternalError"),
        (API_KEY, "rate_limit", True, "Throttling.RateQuota"),
        (API_KEY, "drop", True, "websocket closed"),
    ],
)
def test_dashscope_cosyvoice_failures(
    dashscope_server: FakeDashScope, key: str, fail: str | None, retryable: bool, code: str
) -> None:
    fake = dashscope_server
    fake.reset(split(COSY_PCM, [800, 800]), fail=fail)

    async def scenario() -> None:
        voice = synthesizer("dashscope", fake, COSYVOICE, key=key)
        with pytest.raises(ProviderError) as failure:
            await rest(voice.synthesize(TEXT))
        assert failure.value.retryable is retryable
        assert code in failure.value.message
        await voice.close()

    run(scenario())
    # The key went in this synthesizer's own header, whatever the SDK's module-level key is.
    assert fake.handshakes[0]["authorization"] == f"Bearer {key}"


QWEN_TTS = VoiceOptions(model="qwen3-tts-flash", voice_id="Cherry", language="en")


def test_dashscope_qwen_tts_request_and_pcm_converted_to_mulaw(
    dashscope_server: FakeDashScope,
) -> None:
    fake = dashscope_server
    fake.reset(split(OPENAI_PCM, [4801, 4800]), hold=True)

    async def scenario() -> list[bytes]:
        voice = synthesizer("dashscope", fake, QWEN_TTS)
        try:
            stream = voice.synthesize(TEXT)
            chunks = [await next_chunk(stream)]
            assert fake.sent == 1
            fake.gate.allow(len(fake.chunks) - 1)
            return chunks + await rest(stream)
        finally:
            await voice.close()

    chunks = run(scenario())
    assert len(chunks) >= 2
    assert_sine_at_8k(b"".join(chunks), source_seconds=0.3, frequency=440)
    [request] = fake.requests
    assert request["authorization"] == f"Bearer {API_KEY}"
    assert request["sse"] == "enable"
    assert request["body"]["model"] == "qwen3-tts-flash"
    assert request["body"]["input"] == {"text": TEXT, "voice": "Cherry", "language_type": "English"}
    assert fake.violations == []


def test_dashscope_qwen_tts_cancel_closes_the_stream(dashscope_server: FakeDashScope) -> None:
    fake = dashscope_server
    fake.reset(split(OPENAI_PCM, [4800, 4800]), hold=True)

    async def scenario() -> None:
        voice = synthesizer("dashscope", fake, QWEN_TTS)
        stream = voice.synthesize(TEXT)
        await next_chunk(stream)
        await stream.aclose()
        assert await until(fake.cancelled)
        await voice.close()

    run(scenario())
    assert fake.sent == 1 and not fake.finished.is_set()


@pytest.mark.parametrize(
    ("key", "fail", "retryable"),
    [("wrong-key", None, False), (API_KEY, "server_error", True), (API_KEY, "drop", True)],
)
def test_dashscope_qwen_tts_failures(
    dashscope_server: FakeDashScope, key: str, fail: str | None, retryable: bool
) -> None:
    fake = dashscope_server
    fake.reset(split(OPENAI_PCM, [4800, 4800]), fail=fail)

    async def scenario() -> None:
        voice = synthesizer("dashscope", fake, QWEN_TTS, key=key)
        with pytest.raises(ProviderError) as failure:
            await rest(voice.synthesize(TEXT))
        assert failure.value.retryable is retryable
        await voice.close()

    run(scenario())
