"""The assistant's audio to the carrier, paced in 20 ms frames.

Frames go out on a monotonic clock a little ahead of when they are due to play (`LEAD`), in
batches (`TICK`), so one call costs a few wake-ups per 100 ms rather than one per frame, and the
carrier's buffer holds at most `LEAD` of audio: a `clear` on barge-in then drops little, and
"what the caller heard" is known to a frame. Each speakable piece (a `Segment`) is followed by a
mark; the carrier echoes it once the piece has played (or was cleared).

Frame lateness (how long after its due time a frame was sent) is measured for every frame.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from talkturo import audio
from talkturo.voice import protocol

FRAME_SECONDS = audio.FRAME_MS / 1000
LEAD = 0.08  # seconds of audio the carrier may hold ahead of playing it
TICK = 0.04  # how often the pacer wakes while audio flows


@dataclass
class Segment:
    """One speakable piece of the assistant's reply as it is played."""

    id: int
    text: str
    dues: list[float] = field(default_factory=list)  # monotonic time each frame plays
    frames: int = 0  # frames queued for it (sent or not)
    complete: bool = False  # all its audio has been queued
    marked: bool = False  # its end mark was sent
    played: bool = False  # the carrier echoed the mark (after playing, not a clear)
    cleared: bool = False
    first_sent_at: float | None = None

    def heard_fraction(self, at: float) -> float:
        """The share of the piece's audio played before `at` (of all it had, not only of what
        was sent before a clear)."""
        total = max(self.frames, len(self.dues))
        if not total:
            return 0.0
        heard = sum(1 for due in self.dues if due + FRAME_SECONDS <= at)
        return heard / total

    def heard_text(self, at: float) -> str:
        """The words the caller heard before `at` (in proportion to the audio played)."""
        if self.played:
            return self.text
        words = self.text.split()
        count = int(len(words) * self.heard_fraction(at) + 0.5)
        return " ".join(words[:count])

    @property
    def end_due(self) -> float | None:
        return self.dues[-1] + FRAME_SECONDS if self.dues else None


@dataclass
class Lateness:
    frames: int = 0
    late_over_40ms: int = 0
    worst: float = 0.0
    samples: list[float] = field(default_factory=list)

    def add(self, late: float) -> None:
        self.frames += 1
        if late > 0.04:
            self.late_over_40ms += 1
        self.worst = max(self.worst, late)
        if len(self.samples) < 20_000:
            self.samples.append(late)


class Playout:
    def __init__(
        self,
        send: Callable[[str], Awaitable[None]],
        stream_sid: str,
        *,
        started_at: float,
        on_frame: Callable[[float, bytes], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._sid = stream_sid
        self._started_at = started_at
        self._on_frame = on_frame
        self._clock = clock
        self._queue: deque[tuple[Segment, bytes]] = deque()
        self._pending = bytearray()  # a piece's audio not yet a whole frame
        self._pending_segment: Segment | None = None
        self._next_due = 0.0
        self._wake = asyncio.Event()
        self.segments: dict[int, Segment] = {}
        self._unmarked: list[Segment] = []
        self._open: dict[int, Segment] = {}  # neither played nor cleared yet
        self._ids = 0
        self.lateness = Lateness()
        self.idle = asyncio.Event()
        self.idle.set()

    # ------------------------------------------------------------------ feeding
    def new_segment(self, text: str) -> Segment:
        self._ids += 1
        segment = Segment(self._ids, text)
        self.segments[segment.id] = segment
        self._open[segment.id] = segment
        self._unmarked.append(segment)
        return segment

    def add_audio(self, segment: Segment, mulaw: bytes) -> None:
        if segment.cleared:
            return
        if self._pending_segment is not segment:
            self._flush_pending()
            self._pending_segment = segment
        self._pending.extend(mulaw)
        whole = len(self._pending) - len(self._pending) % audio.FRAME_BYTES
        for start in range(0, whole, audio.FRAME_BYTES):
            self._queue.append((segment, bytes(self._pending[start : start + audio.FRAME_BYTES])))
            segment.frames += 1
        del self._pending[:whole]
        if whole:
            self.idle.clear()
            self._wake.set()

    def drop(self, segment: Segment) -> None:
        """A piece that will not be played after all (its voice failed before any audio)."""
        segment.cleared = True
        self._open.pop(segment.id, None)
        self._set_idle()

    def finish_segment(self, segment: Segment) -> None:
        """All of the piece's audio is queued: pad its last frame, mark its end."""
        if segment.cleared:
            return  # cut short while it arrived (a barge-in): nothing of it is left to play
        if self._pending_segment is segment:
            self._flush_pending()
        segment.complete = True
        self.idle.clear()
        self._wake.set()

    def _flush_pending(self) -> None:
        if self._pending and self._pending_segment is not None:
            frame = bytes(self._pending).ljust(audio.FRAME_BYTES, bytes([audio.SILENCE_BYTE]))
            self._queue.append((self._pending_segment, frame))
            self._pending_segment.frames += 1
        self._pending.clear()
        self._pending_segment = None

    # ------------------------------------------------------------------ barge-in
    async def clear(self) -> list[Segment]:
        """Drop everything not yet played; the segments cut short (their `heard_text` is what
        the caller heard)."""
        now = self._clock()
        self._queue.clear()
        self._pending.clear()
        self._pending_segment = None
        cut: list[Segment] = []
        for segment in self._open.values():
            segment.cleared = True
            segment.complete = True
            if segment.dues and segment.dues[0] < now:
                cut.append(segment)
            segment.dues = [due for due in segment.dues if due < now]
        self._open.clear()
        self._next_due = now  # what comes next plays from now, not on the cleared schedule
        await self._send(protocol.clear(self._sid))
        self._set_idle()
        return cut

    def on_mark(self, name: str) -> Segment | None:
        try:
            segment = self.segments[int(name.removeprefix("seg-"))]
        except (KeyError, ValueError):
            return None
        if not segment.cleared:
            segment.played = True
            self._open.pop(segment.id, None)
        self._set_idle()
        return segment

    def _set_idle(self) -> None:
        if not self._queue and not self._open:
            self.idle.set()

    @property
    def playing_until(self) -> float:
        """When the audio sent so far ends playing (monotonic)."""
        return self._next_due

    @property
    def queued_seconds(self) -> float:
        return len(self._queue) * FRAME_SECONDS

    @property
    def speaking(self) -> bool:
        return bool(self._queue) or self._clock() < self._next_due

    # ------------------------------------------------------------------ pacing
    async def run(self) -> None:
        while True:
            if not self._queue:
                await self._mark_completed()
                self._wake.clear()
                await self._wake.wait()
                # Nothing was queued: the audio starts now (waiting for audio is not lateness).
                self._next_due = max(self._next_due, self._clock())
                continue
            now = self._clock()
            while self._queue and self._next_due <= now + LEAD:
                segment, frame = self._queue.popleft()
                due = self._next_due
                self.lateness.add(max(0.0, now - due))
                if segment.first_sent_at is None:
                    segment.first_sent_at = now
                segment.dues.append(due)
                if self._on_frame is not None:
                    self._on_frame(due - self._started_at, frame)
                await self._send(protocol.media(self._sid, frame))
                self._next_due = due + FRAME_SECONDS
                if not self._queue or self._queue[0][0] is not segment:
                    # The piece's last frame is out: its mark follows at once.
                    await self._mark_completed()
            await self._mark_completed()
            wait = max(0.0, self._next_due - LEAD - self._clock())
            await asyncio.sleep(min(TICK, wait) if self._queue else wait)

    async def _mark_completed(self) -> None:
        if not self._unmarked:
            return
        waiting = self._queue[0][0] if self._queue else None
        for segment in list(self._unmarked):
            if segment.cleared:
                self._unmarked.remove(segment)
                continue
            # Segments play in order: one still queued (or still arriving) and those after wait.
            if not segment.complete or segment is waiting or segment is self._pending_segment:
                break
            self._unmarked.remove(segment)
            segment.marked = True
            if not segment.dues:
                segment.played = True  # nothing to play (empty audio)
                self._open.pop(segment.id, None)
                self._set_idle()
                continue
            await self._send(protocol.mark(self._sid, f"seg-{segment.id}"))
