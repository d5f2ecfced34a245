"""Which adapter serves a call's layer: the assistant names a provider, the keys decide whether
the real provider or the offline stand-in answers.

Keys come from the environment (or, on AWS, from the provider-keys secret, loaded into the same
names once at start): OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, DEEPSEEK_API_KEY,
DASHSCOPE_API_KEY (Qwen models and DashScope voices), MOONSHOT_API_KEY (Kimi), DEEPGRAM_API_KEY,
ASSEMBLYAI_API_KEY, CARTESIA_API_KEY, ELEVENLABS_API_KEY. Each provider's endpoint can be moved
with `<PROVIDER>_BASE_URL` (the tests point the SDKs at local fakes that way).

A layer whose provider has no key:
- with offline stand-ins allowed (the local platform's default, `TALKTURO_OFFLINE_PROVIDERS=1`):
  the local development model; the neural transcriber (Whisper through faster-whisper) and
  voice (Piper) when the `speech` extra is installed, else the pocketsphinx transcriber and the
  espeak-ng voice (also for a language other than English, which the bundled Piper voice does
  not speak). The call's transcript says which in a system message.
- otherwise: `MissingProviderKey`; the call apologises and ends.

`LOCAL_LLM_BASE_URL` (+ `LOCAL_LLM_MODEL`, `LOCAL_LLM_API_KEY`) sends every call's language
model layer to that OpenAI-compatible endpoint instead (a local model server).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from talkturo.provider_keys import KEY_NAMES, provider_key
from talkturo.voice.providers.base import (
    LanguageModel,
    ProviderError,
    Synthesizer,
    Transcriber,
    VoiceOptions,
)

# OpenAI-compatible endpoints the providers document (used through the openai SDK).
OPENAI_COMPATIBLE_BASE_URLS: dict[str, str | None] = {
    "openai": None,  # the SDK's own default
    "deepseek": "https://api.deepseek.com",
    "qwen": "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
    "kimi": "https://api.moonshot.ai/v1",
}


def warm_up_offline_speech() -> None:
    """Load the neural stand-ins' models (the `speech` extra) ahead of the first call, so its
    greeting and first words do not wait ~1-2 s for them (blocking: run it in a thread)."""
    from talkturo.voice.providers.stt import whisper
    from talkturo.voice.providers.tts import piper

    if whisper.available():
        whisper.load()
    if piper.available():
        piper.load()


class MissingProviderKey(ProviderError):
    def __init__(self, provider: str) -> None:
        super().__init__(
            provider, f"no API key configured ({KEY_NAMES.get(provider, '?')})", retryable=False
        )


@dataclass(frozen=True)
class StandIn:
    layer: str
    provider: str
    label: str


class Providers:
    """Builds the adapters of one call from the process's keys."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = dict(os.environ if env is None else env)
        self.stand_ins: list[StandIn] = []

    # ------------------------------------------------------------------ helpers
    def key(self, provider: str) -> str | None:
        return provider_key(self.env, provider)

    def base_url(self, provider: str) -> str | None:
        return self.env.get(f"{provider.upper()}_BASE_URL") or None

    @property
    def offline_allowed(self) -> bool:
        return self.env.get("TALKTURO_OFFLINE_PROVIDERS", "") in ("1", "true", "yes")

    def _missing(self, layer: str, provider: str, label: str) -> bool:
        """True when the stand-in serves this layer (no key, stand-ins allowed)."""
        if self.key(provider):
            return False
        if not self.offline_allowed:
            raise MissingProviderKey(provider)
        self.stand_ins.append(StandIn(layer, provider, label))
        return True

    # ------------------------------------------------------------------ layers
    def language_model(self, provider: str) -> LanguageModel:
        local_url = self.env.get("LOCAL_LLM_BASE_URL")
        if local_url:
            from talkturo.voice.providers.llm.openai_compat import OpenAICompatibleModel

            self.stand_ins.append(
                StandIn("llm", provider, f"the OpenAI-compatible server at {local_url}")
            )
            return OpenAICompatibleModel(
                "local",
                api_key=self.env.get("LOCAL_LLM_API_KEY") or "local",
                base_url=local_url,
                model_override=self.env.get("LOCAL_LLM_MODEL") or None,
            )
        if self._missing("llm", provider, "the local development model (scripted, not AI)"):
            from talkturo.voice.providers.llm.dev import DevelopmentModel

            return DevelopmentModel()
        key = self.key(provider) or ""
        if provider in OPENAI_COMPATIBLE_BASE_URLS:
            from talkturo.voice.providers.llm.openai_compat import OpenAICompatibleModel

            return OpenAICompatibleModel(
                provider,
                api_key=key,
                base_url=self.base_url(provider) or OPENAI_COMPATIBLE_BASE_URLS[provider],
            )
        if provider == "anthropic":
            from talkturo.voice.providers.llm.anthropic import AnthropicModel

            return AnthropicModel(api_key=key, base_url=self.base_url(provider))
        if provider == "google":
            from talkturo.voice.providers.llm.gemini import GeminiModel

            return GeminiModel(api_key=key, base_url=self.base_url("gemini"))
        raise ProviderError(provider, "unknown language model provider", retryable=False)

    def transcriber(self, provider: str) -> Transcriber:
        from talkturo.voice.providers.stt import whisper

        neural = whisper.available()
        label = (
            f"the offline {whisper.MODEL_NAME} transcriber (faster-whisper)"
            if neural
            else "the offline pocketsphinx transcriber"
        )
        if self._missing("transcriber", provider, label):
            if neural:
                return whisper.WhisperTranscriber()
            from talkturo.voice.providers.stt.offline import PocketsphinxTranscriber

            return PocketsphinxTranscriber()
        key = self.key(provider) or ""
        base_url = self.base_url(provider)
        if provider == "deepgram":
            from talkturo.voice.providers.stt.deepgram import DeepgramTranscriber

            return DeepgramTranscriber(api_key=key, base_url=base_url)
        if provider == "assemblyai":
            from talkturo.voice.providers.stt.assemblyai import AssemblyAITranscriber

            return AssemblyAITranscriber(api_key=key, base_url=base_url)
        if provider == "cartesia":
            from talkturo.voice.providers.stt.cartesia import CartesiaTranscriber

            return CartesiaTranscriber(api_key=key, base_url=base_url)
        if provider == "elevenlabs":
            from talkturo.voice.providers.stt.elevenlabs import ElevenLabsTranscriber

            return ElevenLabsTranscriber(api_key=key, base_url=base_url)
        raise ProviderError(provider, "unknown transcriber provider", retryable=False)

    def synthesizer(self, provider: str, options: VoiceOptions) -> Synthesizer:
        from talkturo.voice.providers.tts import piper

        neural = piper.available() and piper.speaks(options.language)
        label = (
            f"the offline Piper voice ({piper.VOICE_NAME})"
            if neural
            else "the offline espeak-ng voice"
        )
        if self._missing("voice", provider, label):
            if neural:
                return piper.PiperSynthesizer(options)
            from talkturo.voice.providers.tts.offline import EspeakSynthesizer

            return EspeakSynthesizer(options)
        key = self.key(provider) or ""
        base_url = self.base_url(provider)
        if provider == "cartesia":
            from talkturo.voice.providers.tts.cartesia import CartesiaSynthesizer

            return CartesiaSynthesizer(options, api_key=key, base_url=base_url)
        if provider == "elevenlabs":
            from talkturo.voice.providers.tts.elevenlabs import ElevenLabsSynthesizer

            return ElevenLabsSynthesizer(options, api_key=key, base_url=base_url)
        if provider == "openai":
            from talkturo.voice.providers.tts.openai import OpenAISynthesizer

            return OpenAISynthesizer(options, api_key=key, base_url=base_url)
        if provider == "dashscope":
            from talkturo.voice.providers.tts.dashscope import DashScopeSynthesizer

            return DashScopeSynthesizer(options, api_key=key, base_url=base_url)
        raise ProviderError(provider, "unknown voice provider", retryable=False)
