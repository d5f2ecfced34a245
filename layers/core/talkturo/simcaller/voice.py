"""The simulated caller's voice through the platform's configured text-to-speech.

On AWS the voice service has no Piper or espeak-ng to speak a test caller's lines, so they go
through the same synthesizer interface as the assistant's replies (`Providers.synthesizer`):
the assistant's voice provider with the platform's key for it. Without a key, on the local
platform (offline stand-ins allowed), the registry answers with its offline voice (Piper when
the `speech` extra is installed, else espeak-ng); on AWS, without a key, `MissingProviderKey`.

A script that names its engine (`tts: piper | espeak-ng | synthetic`) is spoken by that offline
engine instead (simcaller.audio), wherever it runs.
"""

from __future__ import annotations

from collections.abc import Mapping

from talkturo.domain.assistants import AssistantRecord
from talkturo.simcaller.audio import Speech
from talkturo.voice.providers.base import Synthesizer, VoiceOptions
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
