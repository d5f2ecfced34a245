"""The offline transcriber: CMU PocketSphinx 5 running in the process, no provider, no key.

What it is: the `pocketsphinx` wheel with the US-English model it ships (a 16 kHz
acoustic model, a trigram language model and CMUdict). The phone's 8 kHz mu-law is upsampled
to 16 kHz for it (`talkturo.audio.mulaw_to_pcm16`). Accuracy on telephone audio is modest
(short common words come through, long sentences partly); it serves local calls without keys,
not real callers. Only English is recognised, whatever the assistant's language; keyterms are
not used.

How a stream works:
- `send` cuts the audio into 20 ms frames and runs voice activity on each (`stt.segments`:
  the call loop's own energy gate + webrtcvad). 4 voiced frames of the last 5 (80 ms) start a
  speech segment: `SpeechStarted`, then the segment (with 300 ms of audio from
  before the start, so the first sound is not clipped) goes to the decoder. 500 ms of
  unvoiced frames end it: `Transcript(final=True, end_of_turn=True)` with the hypothesis, or
  `UtteranceEnd` when nothing was recognised. A segment longer than 20 s is cut with a final
  transcript without end_of_turn, and decoding goes on.
- Decoding runs in one worker thread per stream (a decoder is not thread-safe, and
  `process_raw` takes tens of milliseconds), fed through a queue; audio that queued up while
  the thread was busy is decoded in one batch. A changed partial hypothesis is sent as an
  interim `Transcript(final=False)` at most every 500 ms of speech.
- Silence is never decoded, so a quiet line costs only the voice-activity check.

Decoder settings: the defaults of the shipped model, plus
- dither with a fixed seed: the upsampled audio has no energy above 4 kHz while the model's
  filterbank reaches 6.8 kHz; the dither keeps those bands' log energies finite, and the fixed
  seed makes results repeatable;
- a starting cepstral mean measured on telephone-band speech instead of the model's wideband
  one (live CMN adapts from there), so the first words of a call are not decoded against the
  wrong channel.
On 20 espeak-ng sentences streamed through the phone path (none of them used to measure the
mean): 16 of 94 words right with the plain defaults, 31 with dither, 48 with both.

Cost (measured on one x86-64 core): building a decoder takes ~0.4-0.6 s and ~95 MB (it reads
CMUdict and the language model), so decoders are built once and pooled per process: the first
`open` pays that in a worker thread, later ones take an idle decoder (under a millisecond, its
feature extraction reset so no state leaks between calls). Decoding takes ~0.2 s of CPU per
second of speech as it streams, plus ~0.1 s for the second pass at the end of a 3 s utterance
(which is also how long the final transcript trails the 500 ms of silence). Silence costs a
few microseconds per frame.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Literal

from talkturo.audio import FRAME_BYTES, mulaw_to_pcm16
from talkturo.voice.providers.base import (
    ProviderError,
    SpeechStarted,
    TranscriberOptions,
    Transcript,
    UtteranceEnd,
)
from talkturo.voice.providers.stt.segments import Mark, SegmentedStream, warn_unless_english

PROVIDER = "pocketsphinx"
DECODER_RATE = 16000
INTERIM_EVERY_FRAMES = 25  # 500 ms of speech between interim transcripts
MAX_IDLE_DECODERS = 4
# Starting cepstral mean of telephone-band speech (8 kHz mu-law upsampled to 16 kHz), measured
# on espeak-ng voices; the model's default (40,3,-1) is wideband speech's.
TELEPHONE_CMN = "58.8,1.6,1.4,9.2,-8.9,2.5,-5.1,-7.9,-14.9,3.5,-0.1,3.2,-4.2"
DECODER_SETTINGS: dict[str, Any] = {
    "loglevel": "FATAL",
    "dither": True,
    "seed": 1,
    "cmninit": TELEPHONE_CMN,
}

WorkKind = Literal["started", "start", "audio", "end_turn", "cut", "stop"]

# --------------------------------------------------------------------------- decoder pool
_pool_lock = threading.Lock()
_idle_decoders: list[Any] = []


def _take_decoder() -> Any:
    """An idle decoder, or a new one (slow: run it in a thread)."""
    with _pool_lock:
        decoder = _idle_decoders.pop() if _idle_decoders else None
    if decoder is None:
        from pocketsphinx import Decoder

        return Decoder(**DECODER_SETTINGS)
    decoder.reinit_feat()  # fresh cepstral mean and dither seed: no state from the last call
    return decoder


def _give_back(decoder: Any) -> None:
    with _pool_lock:
        if len(_idle_decoders) < MAX_IDLE_DECODERS:
            _idle_decoders.append(decoder)


def warm_up() -> None:
    """Build one decoder ahead of the first call (blocking, ~0.5 s)."""
    _give_back(_take_decoder())


class PocketsphinxTranscriber:
    provider = PROVIDER

    async def open(self, options: TranscriberOptions) -> PocketsphinxStream:
        warn_unless_english(options.language)
        try:
            decoder = await asyncio.to_thread(_take_decoder)
        except (RuntimeError, ValueError, OSError) as error:
            raise ProviderError(
                PROVIDER, f"could not load the model: {error}", retryable=False
            ) from error
        return PocketsphinxStream(decoder)


class PocketsphinxStream(SegmentedStream):
    provider = PROVIDER

    def __init__(self, decoder: Any) -> None:
        self._decoder = decoder
        self._ends_pending = 0  # segment ends queued for the worker, not yet decoded
        super().__init__()

    # ------------------------------------------------------------------ segmentation
    def _on_frame(self, frame: bytes) -> None:
        marked = self._segmenter.feed(frame)
        if marked is None:
            return
        mark, audio = marked
        if mark is Mark.START:
            if self._ends_pending:  # keep the order: the last segment's final first
                self._work.put_nowait(("started", b""))
            else:
                self._events.put_nowait(SpeechStarted())
            self._work.put_nowait(("start", b""))
        self._work.put_nowait(("audio", audio))
        if mark is Mark.END:
            self._ends_pending += 1
            self._work.put_nowait(("end_turn", b""))
        elif mark is Mark.CUT:
            self._work.put_nowait(("cut", b""))
            self._work.put_nowait(("start", b""))

    # ------------------------------------------------------------------ decoding (worker thread)
    def _process(self, mulaw: bytes) -> str:
        self._decoder.process_raw(mulaw_to_pcm16(mulaw, DECODER_RATE))
        hypothesis = self._decoder.hyp()
        return hypothesis.hypstr.strip() if hypothesis is not None else ""

    def _finish(self) -> str:
        self._decoder.end_utt()
        hypothesis = self._decoder.hyp()
        return hypothesis.hypstr.strip() if hypothesis is not None else ""

    async def _decode_loop(self) -> None:
        carried: tuple[WorkKind, bytes] | None = None
        interim, since_interim = "", 0
        try:
            while True:
                kind, data = carried or await self._work.get()
                carried, taken = None, 1
                try:
                    if kind == "stop":
                        return
                    if kind == "started":
                        self._events.put_nowait(SpeechStarted())
                    elif kind == "start":
                        await self._run(self._decoder.start_utt)
                        interim, since_interim = "", 0
                    elif kind == "audio":
                        batch = [data]
                        while not self._work.empty():  # catch up on audio queued meanwhile
                            following = self._work.get_nowait()
                            if following[0] != "audio":
                                carried = following
                                break
                            batch.append(following[1])
                            taken += 1
                        audio = b"".join(batch)
                        partial = await self._run(self._process, audio)
                        since_interim += len(audio) // FRAME_BYTES
                        if partial != interim and since_interim >= INTERIM_EVERY_FRAMES:
                            interim, since_interim = partial, 0
                            if partial:
                                self._events.put_nowait(Transcript(partial, final=False))
                    else:
                        text = await self._run(self._finish)
                        if text:
                            self._events.put_nowait(
                                Transcript(text, final=True, end_of_turn=kind == "end_turn")
                            )
                        elif kind == "end_turn":
                            self._events.put_nowait(UtteranceEnd())
                        if kind == "end_turn":
                            self._ends_pending -= 1
                finally:
                    for _ in range(taken):
                        self._work.task_done()
        except (RuntimeError, ValueError) as error:  # how pocketsphinx reports a failure
            self._fail(error)
        finally:
            self._events.put_nowait(None)

    # ------------------------------------------------------------------ closing
    def _end_in_progress(self) -> None:
        self._work.put_nowait(("end_turn", b""))

    def _stop_job(self) -> tuple[WorkKind, bytes]:
        return ("stop", b"")

    def _stopped(self, cleanly: bool) -> None:
        if cleanly:  # a decoder that failed or hung is not handed to the next call
            _give_back(self._decoder)
