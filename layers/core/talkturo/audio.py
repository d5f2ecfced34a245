"""Telephone audio: 8 kHz mono mu-law in 20 ms frames, as the phone network (and Twilio Media
Streams) carries it, and the conversions every part needs (PCM16 at any rate to and from it).

The conversions use the standard library's audioop (C, fast; present up to Python 3.12, which
the project pins below).
"""

from __future__ import annotations

import warnings
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000  # 160: one byte per mu-law sample
SILENCE_BYTE = 0xFF  # mu-law encoding of 0
SILENT_FRAME = bytes([SILENCE_BYTE]) * FRAME_BYTES


def silence(seconds: float) -> bytes:
    return bytes([SILENCE_BYTE]) * max(0, round(seconds * SAMPLE_RATE))


def seconds_of(mulaw: bytes | bytearray) -> float:
    return len(mulaw) / SAMPLE_RATE


def frames(audio: bytes) -> list[bytes]:
    """20 ms frames of 160 bytes; the last one padded with silence."""
    out = []
    for start in range(0, len(audio), FRAME_BYTES):
        chunk = audio[start : start + FRAME_BYTES]
        if len(chunk) < FRAME_BYTES:
            chunk += bytes([SILENCE_BYTE]) * (FRAME_BYTES - len(chunk))
        out.append(chunk)
    return out


def pcm16_to_mulaw(pcm: bytes, rate: int) -> bytes:
    """16-bit little-endian mono PCM at `rate` → 8 kHz mu-law (stateless resampling)."""
    if rate != SAMPLE_RATE:
        pcm, _ = audioop.ratecv(pcm, 2, 1, rate, SAMPLE_RATE, None)
    return audioop.lin2ulaw(pcm, 2)


class PcmToMulaw:
    """Streaming PCM16 (any rate) → 8 kHz mu-law: keeps the resampler's state and an odd
    trailing byte between chunks, so a stream cut anywhere converts without clicks."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._state: Any = None
        self._odd = b""

    def convert(self, pcm: bytes) -> bytes:
        pcm = self._odd + pcm
        if len(pcm) % 2:
            pcm, self._odd = pcm[:-1], pcm[-1:]
        else:
            self._odd = b""
        if not pcm:
            return b""
        if self.rate != SAMPLE_RATE:
            pcm, self._state = audioop.ratecv(pcm, 2, 1, self.rate, SAMPLE_RATE, self._state)
        return audioop.lin2ulaw(pcm, 2)


def mulaw_to_pcm16(audio: bytes, rate: int = SAMPLE_RATE) -> bytes:
    """8 kHz mu-law → 16-bit little-endian PCM at `rate`."""
    pcm = audioop.ulaw2lin(audio, 2)
    if rate != SAMPLE_RATE:
        pcm, _ = audioop.ratecv(pcm, 2, 1, SAMPLE_RATE, rate, None)
    return pcm


def rms(mulaw: bytes) -> int:
    """The frame's RMS on the 16-bit scale."""
    return int(audioop.rms(audioop.ulaw2lin(mulaw, 2), 2))


def is_silent(frame: bytes, threshold: int = 200) -> bool:
    """True when the frame's RMS (16-bit scale) is below `threshold`."""
    return rms(frame) < threshold


def pcm_lin2lin(pcm: bytes, width: int) -> bytes:
    """PCM of another sample width → 16-bit."""
    return audioop.lin2lin(pcm, width, 2)


def to_mono(pcm16: bytes) -> bytes:
    return audioop.tomono(pcm16, 2, 0.5, 0.5)


def split_stereo(pcm16: bytes) -> tuple[bytes, bytes]:
    """Stereo PCM16 → (left, right) mono PCM16."""
    return audioop.tomono(pcm16, 2, 1, 0), audioop.tomono(pcm16, 2, 0, 1)


def interleave_stereo(left_pcm16: bytes, right_pcm16: bytes) -> bytes:
    """Two mono PCM16 channels (padded with silence to the longer one) → stereo PCM16."""
    length = max(len(left_pcm16), len(right_pcm16))
    left = left_pcm16.ljust(length, b"\0")
    right = right_pcm16.ljust(length, b"\0")
    return audioop.add(audioop.tostereo(left, 2, 1, 0), audioop.tostereo(right, 2, 0, 1), 2)
