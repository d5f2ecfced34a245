"""The offline voice: espeak-ng (a formant speech synthesiser, `apt-get install espeak-ng`) run
on the machine, no provider, no key. Robotic but intelligible, and fast (hundreds of times
faster than real time).

Each piece of text is one `espeak-ng -v <voice> -s <words per minute> --stdout -- <text>`
process, started without a shell (the text is a single argument after `--`, so nothing in it
is read as an option). espeak-ng writes a WAV stream to stdout as it synthesises: a 44-byte
RIFF header whose sizes are placeholders (the length is unknown when it is written:
`RIFF`, size, `WAVE`, `fmt ` chunk of 16 bytes with format 1 = PCM, channels, sample rate,
byte rate, block align, bits per sample, then `data` and a size), then 16-bit mono PCM at
22050 Hz. The header is parsed for the rate; the PCM is converted to 8 kHz mu-law chunk by
chunk as it arrives. Cancelling the iteration kills the process.

The voice comes from the assistant's language (en/en-US → en-us, de → de, es → es, fr → fr,
ar → ar, …; anything unknown → en-us), the rate is 175 words per minute (espeak-ng's default)
times the voice speed.

Without espeak-ng installed, the voice falls back to the carrier simulator's deterministic
synthetic speech (tone bursts shaped like syllables), logged once per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import struct
from collections.abc import AsyncIterator

from talkturo.audio import PcmToMulaw
from talkturo.logs import logger
from talkturo.voice.providers.base import ProviderError, VoiceOptions

PROVIDER = "espeak-ng"
BINARY = "espeak-ng"
DEFAULT_VOICE = "en-us"
DEFAULT_WPM = 175
MIN_WPM, MAX_WPM = 80, 450  # espeak-ng's accepted range
READ_BYTES = 4096  # ~90 ms of 22050 Hz PCM16 per chunk read
FALLBACK_CHUNK_BYTES = 1600  # 200 ms of mu-law
STDERR_SHOWN = 300

# Language tag (lower case) → espeak-ng voice; a tag not listed is tried by its primary subtag.
VOICES: dict[str, str] = {
    "en": "en-us",
    "en-us": "en-us",
    "en-gb": "en-gb",
    "en-uk": "en-gb",
    "de": "de",
    "es": "es",
    "es-419": "es-419",
    "es-mx": "es-419",
    "es-us": "es-419",
    "fr": "fr",
    "ar": "ar",
    "it": "it",
    "pt": "pt",
    "pt-br": "pt-br",
    "nl": "nl",
    "pl": "pl",
    "ru": "ru",
    "sv": "sv",
    "tr": "tr",
    "hi": "hi",
    "ja": "ja",
    "zh": "cmn",
    "cmn": "cmn",
}

_fallback_logged = False


def espeak_voice(language: str | None) -> str:
    tag = (language or "").strip().lower().replace("_", "-")
    return VOICES.get(tag) or VOICES.get(tag.split("-")[0], DEFAULT_VOICE)


def espeak_rate(speed: float) -> int:
    return max(MIN_WPM, min(MAX_WPM, round(DEFAULT_WPM * speed)))


async def _wav_header(stream: asyncio.StreamReader) -> tuple[int, int, int]:
    """Reads the header up to the PCM data: (sample rate, channels, bits per sample)."""
    riff = await stream.readexactly(12)
    if riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
        raise ValueError("not a WAV stream")
    fmt: tuple[int, int, int, int] | None = None
    while True:
        chunk_id, size = struct.unpack("<4sI", await stream.readexactly(8))
        if chunk_id == b"data":
            break
        body = await stream.readexactly(size + size % 2)
        if chunk_id == b"fmt ":
            audio_format, channels, rate = struct.unpack("<HHI", body[:8])
            (bits,) = struct.unpack("<H", body[14:16])
            fmt = (audio_format, channels, rate, bits)
    if fmt is None or fmt[0] != 1:
        raise ValueError("the WAV stream is not PCM")
    return fmt[2], fmt[1], fmt[3]


class EspeakSynthesizer:
    provider = PROVIDER

    def __init__(self, options: VoiceOptions) -> None:
        self.options = options
        self.voice = espeak_voice(options.language)
        self.rate = espeak_rate(options.speed)
        self._running: set[asyncio.subprocess.Process] = set()

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        if not text.strip():
            return
        binary = shutil.which(BINARY)
        if binary is None:
            async for chunk in self._fallback(text):
                yield chunk
            return
        try:
            process = await asyncio.create_subprocess_exec(
                binary,
                "-v",
                self.voice,
                "-s",
                str(self.rate),
                "--stdout",
                "--",
                text,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as error:
            raise ProviderError(PROVIDER, f"could not start: {error}", retryable=False) from error
        self._running.add(process)
        try:
            assert process.stdout is not None
            try:
                rate, channels, bits = await _wav_header(process.stdout)
            except (asyncio.IncompleteReadError, ValueError, struct.error) as error:
                raise await self._failure(process, f"no WAV audio ({error})") from error
            if channels != 1 or bits != 16:
                raise ProviderError(
                    PROVIDER, f"unexpected audio: {channels} channels, {bits} bits", retryable=False
                )
            converter = PcmToMulaw(rate)
            while chunk := await process.stdout.read(READ_BYTES):
                mulaw = converter.convert(chunk)
                if mulaw:
                    yield mulaw
            if await process.wait() != 0:
                raise await self._failure(process, f"exited with code {process.returncode}")
        finally:
            self._running.discard(process)
            _kill(process)
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    await process.wait()

    async def _failure(self, process: asyncio.subprocess.Process, what: str) -> ProviderError:
        await process.wait()
        stderr = await process.stderr.read() if process.stderr is not None else b""
        detail = stderr.decode(errors="replace").strip()[:STDERR_SHOWN]
        return ProviderError(PROVIDER, f"{what}: {detail}" if detail else what, retryable=False)

    async def _fallback(self, text: str) -> AsyncIterator[bytes]:
        global _fallback_logged
        if not _fallback_logged:
            _fallback_logged = True
            logger.warning(
                "espeak-ng is not installed (apt-get install espeak-ng); the offline voice "
                "plays synthetic tone bursts instead of speech"
            )
        from talkturo.simcaller.audio import synthetic_speech

        audio = await asyncio.to_thread(synthetic_speech, text)
        for start in range(0, len(audio), FALLBACK_CHUNK_BYTES):
            yield audio[start : start + FALLBACK_CHUNK_BYTES]

    async def close(self) -> None:
        for process in list(self._running):
            _kill(process)
        self._running.clear()


def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
