"""OpenAI voices through the openai SDK's speech endpoint, streamed.

`POST /v1/audio/speech` with `response_format="pcm"` returns raw 24 kHz 16-bit mono PCM as a
chunked body; each chunk is converted to 8 kHz mu-law as it arrives (the converter keeps the
resampler's state and any odd byte between chunks).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai

from talkturo.audio import PcmToMulaw
from talkturo.voice.providers.base import ProviderError, VoiceOptions

PROVIDER = "openai"
PCM_RATE = 24000
# `speed` bounds of the speech endpoint.
MIN_SPEED, MAX_SPEED = 0.25, 4.0
TIMEOUT = httpx2.Timeout(30.0, connect=5.0)


def _retryable_status(status: int) -> bool:
    return status in (408, 409, 429) or status >= 500


class OpenAISynthesizer:
    provider = PROVIDER

    def __init__(self, options: VoiceOptions, *, api_key: str, base_url: str | None) -> None:
        self.options = options
        # No SDK retries: a retry with back-off is dead air; the loop decides what to do.
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=TIMEOUT
        )

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        extra: dict[str, Any] = {}
        instructions = self.options.extra.get("instructions")
        if instructions and not self.options.model.startswith("tts-1"):
            extra["instructions"] = str(instructions)
        converter = PcmToMulaw(PCM_RATE)
        try:
            async with self._client.audio.speech.with_streaming_response.create(
                model=self.options.model,
                voice=self.options.voice_id,
                input=text,
                response_format="pcm",
                speed=min(MAX_SPEED, max(MIN_SPEED, self.options.speed)),
                **extra,
            ) as response:
                async for chunk in response.iter_bytes():
                    audio = converter.convert(chunk)
                    if audio:
                        yield audio
        except openai.APIStatusError as exc:
            raise ProviderError(
                PROVIDER,
                f"HTTP {exc.status_code}: {exc.message}",
                retryable=_retryable_status(exc.status_code),
            ) from exc
        except openai.APITimeoutError as exc:
            raise ProviderError(PROVIDER, "timed out") from exc
        except openai.APIConnectionError as exc:
            raise ProviderError(PROVIDER, f"connection failed: {exc}") from exc
        except httpx2.TimeoutException as exc:
            raise ProviderError(PROVIDER, "timed out while streaming") from exc
        except httpx2.HTTPError as exc:
            # The body is read outside the SDK's request handling: a cut stream surfaces here.
            raise ProviderError(PROVIDER, f"stream broken: {exc!r}") from exc

    async def close(self) -> None:
        await self._client.close()
