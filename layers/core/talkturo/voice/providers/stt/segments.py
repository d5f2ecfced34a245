"""Speech segments cut by voice activity: what the offline transcribers (pocketsphinx, Whisper)
decode, one 20 ms frame of 8 kHz mu-law at a time.

`SpeechSegmenter.feed(frame)` runs the call loop's own `VoiceActivity` (energy gate + webrtcvad,
aggressiveness 2) on the frame and says what it means for the segment:

- `START` (with the 300 ms of audio from before the start, so the first sound is not clipped):
  4 voiced frames of the last 5 (80 ms);
- `AUDIO`: a frame inside the segment;
- `PAUSE`: the 10th unvoiced frame in a row (200 ms), where a transcriber may start decoding
  early: when no voice follows, `END` comes 300 ms later with only silence added;
- `END`: 500 ms of unvoiced frames, the end of the caller's turn;
- `CUT`: the segment reached 20 s; the next frame starts a new one without a new `START`.

Outside a segment, frames are kept for the preroll and nothing is reported.

`SegmentedStream` is what their streams share: audio in any chunk size cut into frames for the
segmenter, one worker thread that decodes, the event queue, `drained()` and stopping.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from typing import Any, TypeVar

from talkturo.audio import FRAME_BYTES
from talkturo.logs import logger
from talkturo.voice.providers.base import ProviderError, SttEvent
from talkturo.voice.turns import VoiceActivity

T = TypeVar("T")
CLOSE_TIMEOUT_SECONDS = 10.0
_warned_language = False

VAD_AGGRESSIVENESS = 2
START_WINDOW_FRAMES = 5
START_VOICED_FRAMES = 4  # 80 ms of voice within 100 ms
PAUSE_UNVOICED_FRAMES = 10  # 200 ms
END_UNVOICED_FRAMES = 25  # 500 ms
PREROLL_FRAMES = 15  # 300 ms kept from before the start
MAX_SEGMENT_FRAMES = 1000  # 20 s


class Mark(Enum):
    START = "start"
    AUDIO = "audio"
    PAUSE = "pause"
    END = "end"
    CUT = "cut"


class SpeechSegmenter:
    def __init__(self, max_segment_frames: int = MAX_SEGMENT_FRAMES) -> None:
        self._vad = VoiceActivity(VAD_AGGRESSIVENESS)
        self._recent: deque[bool] = deque(maxlen=START_WINDOW_FRAMES)
        self._preroll: deque[bytes] = deque(maxlen=PREROLL_FRAMES)
        self._max_frames = max_segment_frames
        self.in_speech = False
        self._unvoiced = 0
        self.segment_frames = 0  # frames of the current segment, preroll included
        self.voiced = False  # the last frame fed

    def feed(self, frame: bytes) -> tuple[Mark, bytes] | None:
        """What `frame` means: a mark and the audio that goes with it (None: outside speech)."""
        voiced = self.voiced = self._vad.is_speech(frame)
        if not self.in_speech:
            self._preroll.append(frame)
            self._recent.append(voiced)
            if sum(self._recent) < START_VOICED_FRAMES:
                return None
            self.in_speech = True
            self._unvoiced = 0
            self.segment_frames = len(self._preroll)
            audio = b"".join(self._preroll)
            self._preroll.clear()
            self._recent.clear()
            return Mark.START, audio
        self.segment_frames += 1
        self._unvoiced = 0 if voiced else self._unvoiced + 1
        if self._unvoiced >= END_UNVOICED_FRAMES:
            self.in_speech = False
            return Mark.END, frame
        if self.segment_frames >= self._max_frames:
            self.segment_frames = 0
            return Mark.CUT, frame
        if self._unvoiced == PAUSE_UNVOICED_FRAMES:
            return Mark.PAUSE, frame
        return Mark.AUDIO, frame


def warn_unless_english(language: str | None) -> None:
    """The offline models know English only: said once per process for another language."""
    global _warned_language
    tag = (language or "en").lower()
    if not tag.startswith("en") and not _warned_language:
        _warned_language = True
        logger.warning("the offline transcriber only recognises English", extra={"language": tag})


class SegmentedStream(ABC):
    """One call's recognition: segmentation on the event loop, decoding in a worker thread
    (a subclass's `_decode_loop`, fed through `_work` in order)."""

    provider: str

    def __init__(self, max_segment_frames: int = MAX_SEGMENT_FRAMES) -> None:
        self._segmenter = SpeechSegmenter(max_segment_frames)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.provider)
        self._pending = bytearray()
        self._work: asyncio.Queue[Any] = asyncio.Queue()
        self._events: asyncio.Queue[SttEvent | ProviderError | None] = asyncio.Queue()
        self._closed = False
        self._failed = False
        self._worker = asyncio.create_task(self._decode_loop())

    async def send(self, audio: bytes) -> None:
        if self._closed or self._failed:
            return
        self._pending += audio
        whole = len(self._pending) - len(self._pending) % FRAME_BYTES
        for start in range(0, whole, FRAME_BYTES):
            self._on_frame(bytes(self._pending[start : start + FRAME_BYTES]))
        del self._pending[:whole]

    @abstractmethod
    def _on_frame(self, frame: bytes) -> None: ...

    @abstractmethod
    async def _decode_loop(self) -> None: ...

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    def _fail(self, error: Exception) -> None:
        self._failed = True
        self._events.put_nowait(
            ProviderError(self.provider, f"decoding failed: {error}", retryable=False)
        )

    async def drained(self) -> None:
        """Waits until the audio sent so far is decoded and its events are queued (tests and
        benchmarks use it to know where a stream stands)."""
        joining = asyncio.ensure_future(self._work.join())
        try:
            await asyncio.wait({joining, self._worker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            joining.cancel()

    async def events(self) -> AsyncIterator[SttEvent]:
        while True:
            item = await self._events.get()
            if item is None:
                self._events.put_nowait(None)  # a later call to events() ends too
                return
            if isinstance(item, ProviderError):
                raise item
            yield item

    @abstractmethod
    def _end_in_progress(self) -> None:
        """Queue the final of the speech still going on at close."""

    @abstractmethod
    def _stop_job(self) -> Any:
        """What tells the worker to stop."""

    @abstractmethod
    def _stopped(self, cleanly: bool) -> None:
        """After the worker ended (`cleanly`: on its stop job, without a failure)."""

    async def close(self) -> None:
        """Decode the speech in progress (its final transcript still arrives), then stop."""
        if self._closed:
            return
        self._closed = True
        if self._segmenter.in_speech:
            self._segmenter.in_speech = False
            self._end_in_progress()
        self._work.put_nowait(self._stop_job())
        cleanly = False
        try:
            await asyncio.wait_for(asyncio.shield(self._worker), CLOSE_TIMEOUT_SECONDS)
            cleanly = not self._failed
        except TimeoutError:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        finally:
            self._executor.shutdown(wait=False)
            self._stopped(cleanly)
