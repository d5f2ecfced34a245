"""The call's stereo recording: the caller on the left channel, the assistant on the right,
aligned in time.

Both channels are kept as 8 kHz mu-law on one timeline (seconds since the media stream started):
the caller's frames at the carrier's media timestamps, the assistant's at the moment each frame
is due to play. Audio sent but cleared before it played (a barge-in) is erased again, so the
recording holds what the caller heard. `wav()` gives 16-bit PCM stereo WAV.

A call that comes back from a failed transfer is a new media stream: its recorder starts with
the earlier recording (`continue_from`), and the new stream's timeline follows it.
"""

from __future__ import annotations

import io
import wave

from talkturo import audio

MAX_SECONDS = 4 * 3600  # a bound on memory whatever the carrier sends


class StereoRecorder:
    def __init__(self) -> None:
        self._caller = bytearray()
        self._assistant = bytearray()
        self._origin = 0  # samples before this stream's time 0 (an earlier stream's audio)

    def continue_from(self, wav_bytes: bytes) -> float:
        """Start with an earlier recording of the call; the seconds it holds."""
        with wave.open(io.BytesIO(wav_bytes)) as earlier:
            if (earlier.getnchannels(), earlier.getsampwidth(), earlier.getframerate()) != (
                2,
                2,
                audio.SAMPLE_RATE,
            ):
                raise ValueError("not a recording of this format")
            frames = earlier.readframes(earlier.getnframes())
        left, right = audio.split_stereo(frames)
        self._caller = bytearray(audio.pcm16_to_mulaw(left, audio.SAMPLE_RATE))
        self._assistant = bytearray(audio.pcm16_to_mulaw(right, audio.SAMPLE_RATE))
        self._origin = max(len(self._caller), len(self._assistant))
        return self._origin / audio.SAMPLE_RATE

    @staticmethod
    def _put(track: bytearray, offset: int, data: bytes) -> None:
        if offset < 0 or offset + len(data) > MAX_SECONDS * audio.SAMPLE_RATE:
            return
        if len(track) < offset:
            track.extend(bytes([audio.SILENCE_BYTE]) * (offset - len(track)))
        track[offset : offset + len(data)] = data

    def caller(self, timestamp_ms: int, frame: bytes) -> None:
        self._put(self._caller, self._origin + timestamp_ms * audio.SAMPLE_RATE // 1000, frame)

    def assistant(self, at_seconds: float, frame: bytes) -> None:
        self._put(self._assistant, self._origin + round(at_seconds * audio.SAMPLE_RATE), frame)

    def erase_assistant_after(self, at_seconds: float) -> None:
        """Audio due after this moment was cleared before it played."""
        start = self._origin + max(0, round(at_seconds * audio.SAMPLE_RATE))
        if start < len(self._assistant):
            del self._assistant[start:]

    @property
    def seconds(self) -> float:
        return max(len(self._caller), len(self._assistant)) / audio.SAMPLE_RATE

    def wav(self) -> bytes:
        left = audio.mulaw_to_pcm16(bytes(self._caller))
        right = audio.mulaw_to_pcm16(bytes(self._assistant))
        out = io.BytesIO()
        with wave.open(out, "wb") as wav:
            wav.setnchannels(2)
            wav.setsampwidth(2)
            wav.setframerate(audio.SAMPLE_RATE)
            wav.writeframes(audio.interleave_stereo(left, right))
        return out.getvalue()
