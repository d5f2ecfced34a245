"""Audio for the simulated phone network: 8 kHz mu-law, 20 ms frames, and the parties' voices.

Lines become speech through the neural Piper voice (the `speech` extra, English voices only,
without its sampling noise so a line always sounds the same) when it is installed; else through
espeak-ng (an offline text-to-speech engine, `apt-get install espeak-ng`); otherwise through a
deterministic synthetic signal: voiced tone bursts shaped like syllables, one burst group per
word, with pauses between words. Any of them can be asked for by name. Whatever speaks, the
result is 8 kHz mono mu-law, as the phone network carries it.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import shutil
import subprocess
import wave
from array import array
from dataclasses import dataclass
from typing import Literal

from talkturo.audio import (
    FRAME_BYTES,
    FRAME_MS,
    SAMPLE_RATE,
    SILENCE_BYTE,
    frames,
    is_silent,
    mulaw_to_pcm16,
    pcm16_to_mulaw,
    pcm_lin2lin,
    silence,
    to_mono,
)

logger = logging.getLogger("talkturo.simcaller")

__all__ = [
    "FRAME_BYTES",
    "FRAME_MS",
    "SAMPLE_RATE",
    "SILENCE_BYTE",
    "Speech",
    "frames",
    "is_silent",
    "mulaw_to_pcm16",
    "pcm16_to_mulaw",
    "silence",
    "speak",
    "wav_to_mulaw",
]
TTS_TIMEOUT_SECONDS = 20.0
Engine = Literal["auto", "piper", "espeak-ng", "synthetic"]


@dataclass(frozen=True)
class Speech:
    audio: bytes  # mu-law, 8 kHz, mono
    engine: str  # "piper", "espeak-ng" or "synthetic"

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def tone(frequency: float, seconds: float, amplitude: float = 0.5) -> bytes:
    """A sine tone in mu-law (the voicemail beep is 1 kHz)."""
    count = round(seconds * SAMPLE_RATE)
    samples = array(
        "h",
        (
            round(amplitude * 32767 * math.sin(2 * math.pi * frequency * i / SAMPLE_RATE))
            for i in range(count)
        ),
    )
    return pcm16_to_mulaw(samples.tobytes(), SAMPLE_RATE)


def beep() -> bytes:
    return tone(1000.0, 0.5)


def wav_to_mulaw(data: bytes) -> bytes:
    """A PCM WAV file (8 or 16 bit, mono or stereo, any rate) as 8 kHz mono mu-law, as the
    phone network plays a <Play> file. wave.Error (or EOFError) when it is not one."""
    with wave.open(io.BytesIO(data)) as wav:
        rate, width, channels = wav.getframerate(), wav.getsampwidth(), wav.getnchannels()
        pcm = wav.readframes(wav.getnframes())
    if channels not in (1, 2):
        raise wave.Error(f"{channels} channels")
    if width == 1:
        pcm = bytes((b - 128) & 0xFF for b in pcm)  # WAV's 8-bit samples are unsigned
    if width != 2:
        pcm = pcm_lin2lin(pcm, width)
    if channels == 2:
        pcm = to_mono(pcm)
    return pcm16_to_mulaw(pcm, rate)


# ---------------------------------------------------------------------------------- speech
def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def _espeak(text: str, voice: str) -> bytes:
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise RuntimeError("espeak-ng is not installed")
    done = subprocess.run(  # noqa: S603 - fixed binary, text passed as one argument
        [binary, "-v", voice, "--stdout", "--", text],
        capture_output=True,
        timeout=TTS_TIMEOUT_SECONDS,
        check=True,
    )
    with wave.open(io.BytesIO(done.stdout)) as wav:
        rate, width, channels = wav.getframerate(), wav.getsampwidth(), wav.getnchannels()
        # espeak-ng writes a streaming header (length unknown): read what is there.
        pcm = wav.readframes(2**31 - 1)
    if width != 2:
        pcm = pcm_lin2lin(pcm, width)
    if channels == 2:
        pcm = to_mono(pcm)
    return pcm16_to_mulaw(pcm, rate)


def synthetic_speech(text: str) -> bytes:
    """A deterministic stand-in for speech: per word, voiced syllable bursts, then a pause.

    Each syllable is a harmonic tone (fundamental 110-220 Hz, chosen from the word) under a
    raised-cosine envelope, so it has speech-like energy and clear gaps that a voice-activity
    detector can find. The same text always gives the same bytes.
    """
    samples = array("h")
    for word in text.split():
        digest = hashlib.sha256(word.lower().encode()).digest()
        f0 = 110 + digest[0] % 110
        syllables = max(1, min(4, round(len(word) / 3)))
        for s in range(syllables):
            length = round(SAMPLE_RATE * (0.14 + (digest[1 + s] % 60) / 1000))
            for i in range(length):
                envelope = 0.5 - 0.5 * math.cos(2 * math.pi * i / length)
                t = i / SAMPLE_RATE
                value = (
                    math.sin(2 * math.pi * f0 * t)
                    + 0.5 * math.sin(2 * math.pi * 2 * f0 * t)
                    + 0.25 * math.sin(2 * math.pi * 3 * f0 * t)
                )
                samples.append(round(9000 * envelope * value))
            samples.extend([0] * round(SAMPLE_RATE * 0.02))
        samples.extend([0] * round(SAMPLE_RATE * 0.08))  # between words
    return pcm16_to_mulaw(samples.tobytes(), SAMPLE_RATE)


def piper_available() -> bool:
    from talkturo.voice.providers.tts import piper

    return piper.available()


def speak(text: str, voice: str = "en-us", engine: Engine = "auto") -> Speech:
    """The line as 8 kHz mu-law speech: by Piper for an English voice when it is installed,
    else by espeak-ng when available (or by the engine asked for)."""
    from talkturo.voice.providers.tts import piper

    if engine == "piper" or (engine == "auto" and piper.speaks(voice) and piper_available()):
        if engine == "piper" and not piper_available():
            raise RuntimeError("Piper is not installed (the `speech` extra)")
        return Speech(piper.speak(text), "piper")
    if engine in ("auto", "espeak-ng") and espeak_available():
        try:
            return Speech(_espeak(text, voice), "espeak-ng")
        except (OSError, RuntimeError, subprocess.SubprocessError, wave.Error) as exc:
            if engine == "espeak-ng":
                raise
            logger.warning("espeak-ng failed (%s); using the synthetic voice", exc)
    elif engine == "espeak-ng":
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    return Speech(synthetic_speech(text), "synthetic")
