"""The stream machinery the transcriber adapters share; each adapter keeps its provider's
protocol (connecting, message names, what its errors mean) in its own module.

- `StreamBase`: the event queue `events()` reads, ended once by `_finish` (`None` on the queue
  marks the end; the error that ended the stream, if any, is raised after the last event), and
  `close()` that is safe to call twice and after a drop.
- `QueuedStream`: audio goes out from a sender task through a bounded queue, so `send()` never
  waits on the network; a queue that fills up means the connection stalled, which ends the
  stream.
- `SocketStream`: a queued stream plus a receiver task reading the socket; close() queues the
  provider's end-of-audio message behind the audio and waits (bounded) for its last results.
- `Chunker`: the call's 20 ms frames gathered into the chunk size a provider wants.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from talkturo.audio import SAMPLE_RATE
from talkturo.voice.providers.base import ProviderError, SttEvent

CONNECT_TIMEOUT = 10.0
# How long close() waits for each of its steps (the provider's last results, the closing
# handshake): a call must not hang up slowly because a provider stopped answering.
CLOSE_TIMEOUT = 3.0
CHUNK_BYTES = SAMPLE_RATE // 10  # 100 ms of mu-law
# Websocket close codes after which the same request cannot succeed.
FATAL_CLOSE_CODES = frozenset({1002, 1003, 1007, 1008})


def retryable_status(status: int | None) -> bool:
    return status is None or status in (408, 429) or status >= 500


def refused(provider: str, status: int | None) -> ProviderError:
    """The websocket upgrade answered with an HTTP error."""
    return ProviderError(
        provider, f"websocket refused (HTTP {status})", retryable=retryable_status(status)
    )


def connect_error(provider: str, exc: BaseException) -> ProviderError:
    """A websocket connect that failed: refused, timed out, or the service unreachable."""
    if isinstance(exc, InvalidStatus):
        return refused(provider, exc.response.status_code)
    if isinstance(exc, TimeoutError):
        return ProviderError(provider, "connection timed out")
    return ProviderError(provider, f"cannot connect: {exc!r}")


class Chunker:
    """Gathers audio into chunks of `size` bytes; with no size, passes each piece on as is."""

    def __init__(self, size: int | None) -> None:
        self._size = size
        self._buffer = bytearray()

    def push(self, audio: bytes) -> list[bytes]:
        """The chunks ready once `audio` is added (a long piece splits into several)."""
        if self._size is None:
            return [bytes(audio)] if audio else []
        self._buffer += audio
        chunks = []
        while len(self._buffer) >= self._size:
            chunks.append(bytes(self._buffer[: self._size]))
            del self._buffer[: self._size]
        return chunks

    def rest(self) -> bytes:
        """What is left over (less than a chunk); the buffer is emptied."""
        rest, self._buffer = bytes(self._buffer), bytearray()
        return rest


class StreamBase(ABC):
    """A `TranscriberStream`'s events and its one ending."""

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._events: asyncio.Queue[SttEvent | None] = asyncio.Queue()
        self._error: ProviderError | None = None
        self._ended = False  # no event follows
        self._closing = False  # close() began: whatever ends the stream now is no error
        self._closed = False

    @abstractmethod
    async def send(self, audio: bytes) -> None: ...

    async def events(self) -> AsyncIterator[SttEvent]:
        while True:
            event = await self._events.get()
            if event is None:
                self._events.put_nowait(None)  # a second reader ends too
                if self._error is not None:
                    raise self._error
                return
            yield event

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing = True
        await self._flush_and_close()
        self._finish(None)

    @abstractmethod
    async def _flush_and_close(self) -> None:
        """close()'s work: the buffered audio out, the provider's last results in, the
        connection closed; every wait bounded, nothing raised."""

    def _finish(self, error: ProviderError | None) -> None:
        if self._ended:
            return
        self._ended = True
        if error is not None and not self._closing:
            self._error = error
        self._events.put_nowait(None)

    def _fail(self, message: str, *, retryable: bool = True) -> None:
        self._finish(ProviderError(self._provider, message, retryable=retryable))


class QueuedStream(StreamBase):
    """Audio through a bounded queue to a sender task; `None` on the queue ends the audio."""

    # What a send on a closed or broken connection raises.
    send_errors: tuple[type[BaseException], ...] = (ConnectionClosed, OSError)

    def __init__(self, provider: str, *, backlog: int, chunk_bytes: int | None) -> None:
        super().__init__(provider)
        self._chunker = Chunker(chunk_bytes)
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue(backlog)
        self._sender = asyncio.create_task(self._send_loop(), name=f"{provider}-stt-send")

    async def send(self, audio: bytes) -> None:
        """Audio after the stream ended is dropped: `events()` reports why it ended."""
        if self._ended or self._closing:
            return
        for chunk in self._chunker.push(audio):
            if self._ended:
                break  # the queue filled up: the stream is over
            try:
                self._outbox.put_nowait(chunk)
            except asyncio.QueueFull:
                self._fail("connection stalled: audio is not going out")

    @abstractmethod
    async def _send_audio(self, chunk: bytes) -> None: ...

    async def _send_end(self) -> None:
        """The provider's end-of-audio message, where it has one."""

    def _queue_end(self, tail: bytes = b"") -> None:
        """The last audio, then the end (not when the queue is full: the stream ended anyway)."""
        with contextlib.suppress(asyncio.QueueFull):
            if tail:
                self._outbox.put_nowait(tail)
            self._outbox.put_nowait(None)

    async def _send_loop(self) -> None:
        try:
            while True:
                chunk = await self._outbox.get()
                if chunk is None:
                    await self._send_end()
                    return
                await self._send_audio(chunk)
        except self.send_errors as exc:
            self._fail(f"send failed: {exc!r}")


class SocketStream(QueuedStream):
    """A queued stream whose socket this module reads, from a receiver task."""

    def __init__(self, provider: str, *, backlog: int, chunk_bytes: int | None) -> None:
        super().__init__(provider, backlog=backlog, chunk_bytes=chunk_bytes)
        self._receiver = asyncio.create_task(self._receive_loop(), name=f"{provider}-stt-receive")

    @abstractmethod
    async def _recv(self) -> Any: ...

    @abstractmethod
    def _on_message(self, message: Any) -> ProviderError | None:
        """Turns one message into events; an error returned ends the stream."""

    @abstractmethod
    async def _close_socket(self) -> None: ...

    def _close_reason(self, received: str) -> str:
        """What a close reports: the reason the close frame gave, if any."""
        return received or "connection lost"

    async def _receive_loop(self) -> None:
        try:
            while True:
                error = self._on_message(await self._recv())
                if error is not None:
                    self._finish(error)
                    await self._close_socket_quietly()
                    return
        except ConnectionClosed as exc:
            # Expected after the end-of-audio message (then _finish ignores it); unasked, a
            # clean close still ends the stream.
            code = exc.rcvd.code if exc.rcvd else 1006
            reason = self._close_reason(exc.rcvd.reason if exc.rcvd else "")
            self._fail(
                f"websocket closed ({code}): {reason}", retryable=code not in FATAL_CLOSE_CODES
            )
        except (WebSocketException, OSError, ValueError) as exc:
            self._fail(f"connection lost: {exc!r}")

    async def _flush_and_close(self) -> None:
        if not self._ended:
            self._queue_end(self._chunker.rest())  # the end message once the audio is out
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._receiver), CLOSE_TIMEOUT)
        for task in (self._sender, self._receiver):
            task.cancel()
        await asyncio.gather(self._sender, self._receiver, return_exceptions=True)
        await self._close_socket_quietly()

    async def _close_socket_quietly(self) -> None:
        # Bounded: a half-open socket would hold the closing handshake for ten seconds.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._close_socket(), CLOSE_TIMEOUT)
