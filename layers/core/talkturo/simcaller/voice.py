"""The simulated caller's voice through the platform's configured text-to-speech.

On AWS the voice service has no Piper or espeak-ng to speak a test caller's lines, so they go
through the same synthesizer interface as the assistant's replies (`Providers.synthesizer`):
the assistant's voice provider with the platform's key for it. Without a key, on the local
platform (offline stand-ins allowed), the registry answers with its offline voice (Piper when
the `speech` extra is installed, else espeak-ng); on AWS, without a key, `MissingProviderKey`.

What a conversing caller heard (`converse` steps) is made text the same way: the assistant's
transcriber through `Providers.transcriber` (the offline Whisper or pocketsphinx stand-in
locally without a key), fed the heard audio and then silence, its finals joined.

A script that names its engine (`tts: piper | espeak-ng | synthetic`) is spoken by that offline
engine instead (simcaller.audio), wherever it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from talkturo.domain.assistants import AssistantRecord
from talkturo.simcaller import audio
from talkturo.simcaller.audio import Speech
from talkturo.voice.providers.base import (
    Synthesizer,
    Transcriber,
    TranscriberOptions,
    Transcript,
    VoiceOptions,
)
from talkturo.voice.providers.registry import Providers


def caller_voice(assistant: AssistantRecord, env: Mapping[str, str] | None = None) -> Synthesizer:
    """The synthesizer that speaks a test caller's lines for calls to `assistant`."""
    voice = assistant.voice
    options = VoiceOptions(
        model=voice.model,
        voice_id=voice.voice_id,
        speed=voice.speed,
        language=assistant.transcriber.language,
    )
    return Providers(env).synthesizer(voice.provider, options)


async def synthesize(voice: Synthesizer, text: str) -> Speech:
    """The whole line as 8 kHz mu-law, named after the provider that spoke it."""
    chunks = [chunk async for chunk in voice.synthesize(text)]
    return Speech(b"".join(chunks), voice.provider)


def caller_ear(
    assistant: AssistantRecord, env: Mapping[str, str] | None = None
) -> tuple[Transcriber, TranscriberOptions]:
    """The transcriber (and its options) that hears the assistant for a conversing caller."""
    config = assistant.transcriber
    options = TranscriberOptions(model=config.model, language=config.language)
    return Providers(env).transcriber(config.provider), options


async def transcribe(
    transcriber: Transcriber,
    options: TranscriberOptions,
    heard: bytes,
    *,
    settle: float = 1.5,
    limit: float = 30.0,
) -> str:
    """The text of `heard` (8 kHz mu-law): one stream, the audio then a second of silence,
    its finals until it has said nothing for `settle` seconds (or `limit` pass), then closed."""
    stream = await transcriber.open(options)
    finals: list[str] = []
    news = asyncio.Event()

    async def read() -> None:
        async for event in stream.events():
            if isinstance(event, Transcript) and event.final and event.text.strip():
                finals.append(event.text.strip())
            news.set()

    reader = asyncio.create_task(read())
    try:
        for start in range(0, len(heard), audio.FRAME_BYTES):
            await stream.send(heard[start : start + audio.FRAME_BYTES])
        await stream.send(audio.silence(1.0))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while not reader.done() and loop.time() < deadline:
            news.clear()
            try:
                await asyncio.wait_for(news.wait(), settle)
            except TimeoutError:
                break
        await stream.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reader), settle)
    finally:
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
    return " ".join(finals)
