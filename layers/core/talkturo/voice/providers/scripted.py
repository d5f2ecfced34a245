"""Scripted providers with fixed, configurable latencies: the benchmark's fake providers and the
conversation tests' stand-ins. They implement the same interfaces as the real adapters, so the
call loop cannot tell them apart, and they keep a log of what they were asked.

- `ScriptedTranscriber`: finds the caller's speech in the audio itself (energy per 20 ms frame)
  and, `final_delay` after each stretch of speech ends, emits the next scripted line as a final,
  end-of-turn transcript (an interim one as soon as speech starts, like streaming providers,
  unless `interims` is off).
- `ScriptedModel`: answers each request with `respond(request)` (text and tool calls), the first
  token after `first_token_delay`, then `tokens_per_second`.
- `ToneVoice`: turns text into a speech-like tone of a length proportional to the words, first
  audio after `first_audio_delay`, the rest in 100 ms chunks at `realtime_factor` times real time.
Each can be told to fail (`fail_next`) to test recovery.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from talkturo import audio
from talkturo.voice.providers.base import (
    ChatRequest,
    Finished,
    LlmEvent,
    ProviderError,
    SttEvent,
    TextDelta,
    ToolCall,
    TranscriberOptions,
    Transcript,
    VoiceOptions,
)

SPEECH_RMS = 500


# --------------------------------------------------------------------------- transcriber


class _ScriptedStream:
    def __init__(self, owner: ScriptedTranscriber) -> None:
        self.owner = owner
        self.queue: asyncio.Queue[SttEvent | ProviderError | None] = asyncio.Queue()
        self.in_speech = False
        self.voiced_frames = 0
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.audio_seconds = 0.0
        self._buffer = bytearray()

    async def send(self, mulaw: bytes) -> None:
        if self.closed:
            raise ProviderError("scripted", "stream closed")
        self._buffer.extend(mulaw)
        while len(self._buffer) >= audio.FRAME_BYTES:
            frame = bytes(self._buffer[: audio.FRAME_BYTES])
            del self._buffer[: audio.FRAME_BYTES]
            self._frame(frame)

    def _frame(self, frame: bytes) -> None:
        owner = self.owner
        self.audio_seconds += audio.FRAME_MS / 1000
        if owner.drop_after is not None and self.audio_seconds >= owner.drop_after:
            owner.drop_after = None
            self.queue.put_nowait(ProviderError("scripted", "connection dropped"))
            return
        voiced = audio.rms(frame) >= SPEECH_RMS
        loop = asyncio.get_running_loop()
        if voiced:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self.voiced_frames += 1
            if not self.in_speech and self.voiced_frames >= 3:
                self.in_speech = True
                if owner.interims:
                    self.queue.put_nowait(Transcript(owner.peek(), final=False))
        else:
            self.voiced_frames = 0
            if self.in_speech and self.timer is None:
                # This frame is the first silence: speech ended when it began.
                ended = time.monotonic() - audio.FRAME_MS / 1000
                delay = max(0.0, ended + owner.final_delay - time.monotonic())
                self.timer = loop.call_later(delay, self._final, ended)

    def _final(self, ended: float) -> None:
        self.timer = None
        self.in_speech = False
        text = self.owner.next_line()
        self.owner.finals.append((ended, time.monotonic(), text))
        self.queue.put_nowait(Transcript(text, final=True, end_of_turn=True))

    async def events(self) -> AsyncIterator[SttEvent]:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            if isinstance(item, ProviderError):
                raise item
            yield item

    async def close(self) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        self.queue.put_nowait(None)


@dataclass
class ScriptedTranscriber:
    lines: list[str] = field(default_factory=list)
    final_delay: float = 0.15
    # False: nothing until the final, as a batch transcriber working behind the audio.
    interims: bool = True
    default_line: str = "hello"
    drop_after: float | None = None  # seconds of audio, once
    fail_opens: int = 0
    provider: str = "scripted"
    opened: int = 0
    finals: list[tuple[float, float, str]] = field(default_factory=list)  # speech end, sent, text
    _position: int = 0

    def peek(self) -> str:
        line = self.lines[self._position] if self._position < len(self.lines) else ""
        return (line or self.default_line).split(" ")[0]

    def next_line(self) -> str:
        if self._position < len(self.lines):
            self._position += 1
            return self.lines[self._position - 1]
        return self.default_line

    async def open(self, options: TranscriberOptions) -> _ScriptedStream:
        if self.fail_opens:
            self.fail_opens -= 1
            raise ProviderError(self.provider, "refused")
        self.opened += 1
        return _ScriptedStream(self)


# --------------------------------------------------------------------------- language model

Responder = Callable[[ChatRequest], list[str | ToolCall]]
_ids = itertools.count(1)


def say(text: str) -> Responder:
    return lambda _request: [text]


def tool(name: str, /, **arguments: Any) -> ToolCall:
    return ToolCall(f"call_{next(_ids)}", name, arguments)


@dataclass
class ScriptedModel:
    respond: Responder = field(default_factory=lambda: say("Sure. How can I help you today?"))
    first_token_delay: float = 0.3
    tokens_per_second: float = 50.0
    fail_next: int = 0
    fail_after_tokens: int | None = None
    provider: str = "scripted"
    requests: list[ChatRequest] = field(default_factory=list)
    first_tokens: list[float] = field(default_factory=list)

    async def stream(self, request: ChatRequest) -> AsyncIterator[LlmEvent]:
        self.requests.append(request)
        if self.fail_next:
            self.fail_next -= 1
            await asyncio.sleep(self.first_token_delay)
            raise ProviderError(self.provider, "the model failed")
        await asyncio.sleep(self.first_token_delay)
        interval = 1.0 / self.tokens_per_second
        sent = 0
        calls: list[ToolCall] = []
        for item in self.respond(request):
            if isinstance(item, ToolCall):
                calls.append(item)
                continue
            words = item.split(" ")
            for index, word in enumerate(words):
                if sent:
                    await asyncio.sleep(interval)
                else:
                    self.first_tokens.append(time.monotonic())
                if self.fail_after_tokens is not None and sent >= self.fail_after_tokens:
                    self.fail_after_tokens = None
                    raise ProviderError(self.provider, "the stream broke")
                sent += 1
                yield TextDelta(word if index == 0 and sent == 1 else " " + word)
        for call in calls:
            yield call
        yield Finished("tool_calls" if calls else "stop")


# --------------------------------------------------------------------------- voice


def tone_speech(text: str, words_per_second: float = 3.0) -> bytes:
    """A 220 Hz tone with a syllable-like envelope, as long as the words take to say."""
    seconds = max(0.2, len(text.split()) / words_per_second)
    count = round(seconds * audio.SAMPLE_RATE)
    samples = bytearray()
    for i in range(count):
        envelope = 0.6 + 0.4 * math.sin(2 * math.pi * 4 * i / audio.SAMPLE_RATE)
        value = int(9000 * envelope * math.sin(2 * math.pi * 220 * i / audio.SAMPLE_RATE))
        samples += value.to_bytes(2, "little", signed=True)
    return audio.pcm16_to_mulaw(bytes(samples), audio.SAMPLE_RATE)


class ToneVoice:
    provider = "scripted"

    def __init__(
        self,
        options: VoiceOptions | None = None,
        *,
        first_audio_delay: float = 0.1,
        realtime_factor: float = 4.0,  # audio produced this many times faster than it plays
        words_per_second: float = 3.0,
        fail_next: int = 0,
    ) -> None:
        self.first_audio_delay = first_audio_delay
        self.realtime_factor = realtime_factor
        self.words_per_second = words_per_second
        self.fail_next = fail_next
        self.texts: list[str] = []
        self.cancelled = 0
        self._cache: dict[str, bytes] = {}

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        self.texts.append(text)
        if self.fail_next:
            self.fail_next -= 1
            await asyncio.sleep(self.first_audio_delay)
            raise ProviderError(self.provider, "the voice failed")
        speech = self._cache.get(text)
        if speech is None:
            speech = self._cache[text] = tone_speech(text, self.words_per_second)
        chunk = audio.SAMPLE_RATE // 10  # 100 ms
        try:
            await asyncio.sleep(self.first_audio_delay)
            for start in range(0, len(speech), chunk):
                if start:
                    await asyncio.sleep(0.1 / self.realtime_factor)
                yield speech[start : start + chunk]
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise

    async def close(self) -> None:
        return None
