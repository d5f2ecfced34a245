"""Whose turn it is: the caller's speech as voice activity (every 20 ms frame) and the
transcriber's signals, turned into two decisions the call loop acts on:

- `onset`: the caller started talking (enough voiced frames in a short window, or the
  transcriber heard words). While the assistant speaks this is a barge-in.
- `end_of_turn`: the caller finished. Fast path: the transcriber says the turn ended (Deepgram
  speech_final, AssemblyAI end_of_turn, an utterance end) and no voice has been heard since.
  Fallbacks when the transcriber gives no end signal: final text plus `END_SILENCE_MS` of
  silence; only interim text plus `STUCK_SILENCE_MS` (after the voice and the last interim).

- `awaiting_words`: the caller spoke and the transcriber has not yet said what (no end-of-turn
  signal since the onset), for at most `AWAIT_WORDS_SECONDS` after the last voice. A starved
  offline transcriber can take seconds; the call loop does not nudge the caller meanwhile.

Pure: the caller passes the time (monotonic seconds) in; no I/O, so it is tested frame by frame.
"""

from __future__ import annotations

import warnings
from collections import deque
from dataclasses import dataclass

from talkturo.voice.providers.base import SpeechStarted, SttEvent, Transcript, UtteranceEnd

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

ONSET_WINDOW_FRAMES = 12  # 240 ms
ONSET_VOICED_FRAMES = 9  # of which voiced: ~180 ms of speech, not a click or a cough
END_SILENCE_MS = 700
STUCK_SILENCE_MS = 1500
# A transcriber that never answers some speech (a cough) delays a nudge by this much at most.
AWAIT_WORDS_SECONDS = 15.0
ENERGY_THRESHOLD = 350  # RMS on the 16-bit scale, used with the VAD against line noise


class VoiceActivity:
    """webrtcvad on 8 kHz PCM16 frames, gated by energy (so faint line hiss never counts)."""

    def __init__(self, aggressiveness: int = 2) -> None:
        import webrtcvad

        self._vad = webrtcvad.Vad(aggressiveness)

    def is_speech(self, mulaw_frame: bytes) -> bool:
        pcm = audioop.ulaw2lin(mulaw_frame, 2)
        if audioop.rms(pcm, 2) < ENERGY_THRESHOLD:
            return False
        return bool(self._vad.is_speech(pcm, 8000))


@dataclass
class TurnText:
    text: str
    ended_by: str  # transcriber | silence | stuck


class TurnDetector:
    def __init__(self) -> None:
        self._window: deque[bool] = deque(maxlen=ONSET_WINDOW_FRAMES)
        self._speaking = False
        self.last_voice_at = 0.0
        self._finals: list[str] = []
        self._interim = ""
        self._interim_at = 0.0
        self._end_signal_at: float | None = None
        self._heard_since_signal = False
        self._onset_pending = False
        self._awaiting = False  # an onset not yet answered by an end-of-turn signal

    # ------------------------------------------------------------------ inputs
    def on_frame(self, voiced: bool, now: float) -> None:
        self._window.append(voiced)
        if voiced:
            self.last_voice_at = now
            if self._end_signal_at is not None:
                self._heard_since_signal = True
        voiced_count = sum(self._window)
        if not self._speaking and voiced_count >= ONSET_VOICED_FRAMES:
            self._speaking = True
            self._onset_pending = True
            self._awaiting = True
        elif self._speaking and voiced_count == 0:
            self._speaking = False

    def on_transcriber(self, event: SttEvent, now: float) -> None:
        if isinstance(event, SpeechStarted):
            return  # the voice activity decides onsets; providers' VAD events arrive later
        if isinstance(event, UtteranceEnd):
            self._signal(now)
            return
        if isinstance(event, Transcript):
            text = event.text.strip()
            if event.final:
                if text:
                    self._finals.append(text)
                self._interim = ""
            elif text:
                if not self._interim and not self._finals:
                    self._onset_pending = True  # words heard: the caller is talking
                self._interim = text
                self._interim_at = now
            if event.end_of_turn:
                self._signal(now)
            elif text:
                self._end_signal_at = None

    def _signal(self, now: float) -> None:
        self._end_signal_at = now
        self._heard_since_signal = False
        self._awaiting = False

    # ------------------------------------------------------------------ decisions
    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def has_words(self) -> bool:
        return bool(self._finals or self._interim)

    def awaiting_words(self, now: float) -> bool:
        return self._awaiting and now - self.last_voice_at < AWAIT_WORDS_SECONDS

    def take_onset(self) -> bool:
        """True once per onset of the caller's speech."""
        onset, self._onset_pending = self._onset_pending, False
        return onset

    def end_of_turn(self, now: float) -> TurnText | None:
        """The caller's turn, once it has ended; the detector is then ready for the next."""
        silence_ms = (now - self.last_voice_at) * 1000
        ended_by: str | None = None
        if self._finals and self._end_signal_at is not None and not self._heard_since_signal:
            # Trusted even while the voice window still holds the last syllables: waiting for
            # it to drain would add its length to every answer.
            ended_by = "transcriber"
        elif self._speaking:
            return None
        elif self._finals and silence_ms >= END_SILENCE_MS and not self._interim:
            ended_by = "silence"
        elif self._interim and min(silence_ms, (now - self._interim_at) * 1000) >= STUCK_SILENCE_MS:
            # Stuck: no final in that long after the voice and after the last interim (one
            # that comes late, from a transcriber behind the audio, has its final to follow).
            ended_by = "stuck"
        if ended_by is None:
            return None
        text = " ".join([*self._finals, self._interim]).strip()
        self.reset()
        return TurnText(text, ended_by) if text else None

    def reset(self) -> None:
        self._finals.clear()
        self._interim = ""
        self._end_signal_at = None
        self._heard_since_signal = False
        self._awaiting = False
