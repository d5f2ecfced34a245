"""ElevenLabs voices through the elevenlabs SDK's streaming endpoint.

`POST /v1/text-to-speech/{voice_id}/stream?output_format=ulaw_8000` returns the audio as a
chunked HTTP body, already 8 kHz mu-law, so chunks go to the caller untouched.

Why HTTP streaming rather than the stream-input websocket: the loop hands over whole sentences,
so the websocket's advantage (feeding text as the model writes it) does not apply, while its
per-sentence costs do (a handshake per voice/context, an initial-text message, a flush). The
HTTP request rides a kept-alive connection of the SDK's httpx client, so first audio is one
request away; and the SDK's async client supports only this path (its websocket helper is
synchronous).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
from elevenlabs.client import AsyncElevenLabs
from elevenlabs.core.api_error import ApiError
from elevenlabs.core.request_options import RequestOptions
from elevenlabs.types import VoiceSettings

from talkturo.voice.providers.base import ProviderError, VoiceOptions

PROVIDER = "elevenlabs"
OUTPUT_FORMAT = "ulaw_8000"
# voice_settings.speed bounds ElevenLabs documents.
MIN_SPEED, MAX_SPEED = 0.7, 1.2
# Models that take `language_code` (the multilingual v2 model refuses it).
LANGUAGE_CODE_MODELS = ("eleven_flash_v2_5", "eleven_turbo_v2_5", "eleven_v3")
VOICE_SETTING_KEYS = ("stability", "similarity_boost", "style", "use_speaker_boost")
TIMEOUT = httpx.Timeout(30.0, connect=5.0)
# The SDK re-chunks the body to 1024 bytes (128 ms of 8 kHz mu-law) unless told otherwise;
# None passes every network chunk on as it arrives (httpx `aiter_bytes(chunk_size=None)`).
REQUEST_OPTIONS = cast(RequestOptions, {"chunk_size": None})


def _retryable_status(status: int | None) -> bool:
    return status is None or status in (408, 429) or status >= 500


def _error_detail(body: Any) -> str:
    """The message of an ElevenLabs error body ({"detail": {"status", "message"}})."""
    if isinstance(body, dict):
        detail = body.get("detail", body)
        if isinstance(detail, dict):
            return str(detail.get("message") or detail.get("status") or "")
        return str(detail)
    return str(body or "")[:200]


class ElevenLabsSynthesizer:
    provider = PROVIDER

    def __init__(self, options: VoiceOptions, *, api_key: str, base_url: str | None) -> None:
        self.options = options
        self._http = httpx.AsyncClient(timeout=TIMEOUT)
        self._client = AsyncElevenLabs(api_key=api_key, base_url=base_url, httpx_client=self._http)

    def _voice_settings(self) -> VoiceSettings | None:
        """Only what the assistant changes: anything sent replaces the voice's stored setting."""
        settings: dict[str, Any] = {
            key: self.options.extra[key] for key in VOICE_SETTING_KEYS if key in self.options.extra
        }
        if self.options.speed != 1.0:
            settings["speed"] = min(MAX_SPEED, max(MIN_SPEED, self.options.speed))
        return VoiceSettings(**settings) if settings else None

    def _language_code(self) -> str | None:
        language = self.options.language
        if not language or not self.options.model.startswith(LANGUAGE_CODE_MODELS):
            return None
        return language.split("-")[0].lower()

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        extra: dict[str, Any] = {}
        language_code = self._language_code()
        if language_code:
            extra["language_code"] = language_code
        voice_settings = self._voice_settings()
        if voice_settings is not None:
            extra["voice_settings"] = voice_settings
        stream = self._client.text_to_speech.stream(
            self.options.voice_id,
            text=text,
            model_id=self.options.model,
            output_format=OUTPUT_FORMAT,
            request_options=REQUEST_OPTIONS,
            **extra,
        )
        # aclosing: leaving early closes the response, which ends the generation server-side.
        async with contextlib.aclosing(stream):
            try:
                async for chunk in stream:
                    if chunk:
                        yield chunk
            except ApiError as exc:
                status = exc.status_code
                raise ProviderError(
                    PROVIDER,
                    f"HTTP {status}: {_error_detail(exc.body)}",
                    retryable=_retryable_status(status),
                ) from exc
            except httpx.TimeoutException as exc:
                raise ProviderError(PROVIDER, "timed out") from exc
            except httpx.HTTPError as exc:
                raise ProviderError(PROVIDER, f"connection failed: {exc!r}") from exc

    async def close(self) -> None:
        await self._http.aclose()
