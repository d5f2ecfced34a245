"""Cartesia Ink speech-to-text over the `/stt/websocket` endpoint, through the cartesia SDK's
async websocket connection (`stt.manual_finalize`).

The phone audio goes as 8 kHz mu-law (`pcm_mulaw`, which Ink accepts), gathered into 100 ms
chunks as Cartesia suggests. Ink Whisper finalizes by itself after a stretch of silence, so a
final transcript is also the end of the caller's utterance; Cartesia sends text as deltas since
the last final one, which is how the call loop reads interim and final text anyway.
`close` asks Cartesia to transcribe what it still holds; it answers `done` and closes.

The socket is read here (`recv`) rather than through the SDK's reconnecting iterator: a dropped
connection must end the stream with an error, not be retried behind the call loop's back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, cast

import httpx
from cartesia import AsyncCartesia, omit
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from talkturo.audio import SAMPLE_RATE
from talkturo.voice.providers.base import (
    ProviderError,
    SttEvent,
    TranscriberOptions,
    TranscriberStream,
    Transcript,
    UtteranceEnd,
)

if TYPE_CHECKING:
    from cartesia.resources.stt.manual_finalize import AsyncManualFinalizeResourceConnection

logger = logging.getLogger(__name__)

PROVIDER = "cartesia"
CONNECT_TIMEOUT = 10.0
# How long close() waits for the last transcripts and `done` after `close`.
CLOSE_TIMEOUT = 3.0
CHUNK_BYTES = SAMPLE_RATE // 10  # 100 ms of mu-law
MAX_BACKLOG = 100  # chunks (10 s) waiting for the socket before it counts as stalled
FATAL_CLOSE_CODES = frozenset({1002, 1003, 1007, 1008})


def _retryable_status(status: int | None) -> bool:
    return status is None or status in (408, 429) or status >= 500


def _urls(base_url: str) -> tuple[str, str]:
    """CARTESIA_BASE_URL → (REST, websocket) base URLs; the SDK would always pick wss."""
    url = httpx.URL(base_url.rstrip("/"))
    secure = url.scheme in ("https", "wss")
    rest = str(url.copy_with(scheme="https" if secure else "http"))
    socket = str(url.copy_with(scheme="wss" if secure else "ws"))
    return rest, socket


class CartesiaTranscriber:
    provider = PROVIDER

    def __init__(self, api_key: str, base_url: str | None = None) -> None:
        self._api_key = api_key
        self._base_url = base_url

    def _client(self) -> AsyncCartesia:
        if self._base_url:
            rest, socket = _urls(self._base_url)
            return AsyncCartesia(api_key=self._api_key, base_url=rest, websocket_base_url=socket)
        return AsyncCartesia(api_key=self._api_key)

    async def open(self, options: TranscriberOptions) -> TranscriberStream:
        manager = self._client().stt.manual_finalize.websocket(
            model=options.model,
            encoding="pcm_mulaw",
            sample_rate=options.sample_rate,
            # The SDK's type names only "en"; the endpoint takes every language Ink Whisper has.
            language=cast(Any, options.language),
            keyterm=list(options.keyterms) if options.keyterms else omit,
        )
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                connection = await manager.enter()
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise ProviderError(
                PROVIDER, f"websocket refused (HTTP {status})", retryable=_retryable_status(status)
            ) from exc
        except TimeoutError as exc:
            raise ProviderError(PROVIDER, "connection timed out") from exc
        except Exception as exc:  # no SDK or websockets error may escape
            raise ProviderError(PROVIDER, f"cannot connect: {exc!r}") from exc
        return _CartesiaStream(connection)


class _CartesiaStream:
    def __init__(self, connection: AsyncManualFinalizeResourceConnection) -> None:
        self._connection = connection
        self._events: asyncio.Queue[SttEvent | None] = asyncio.Queue()
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue(MAX_BACKLOG)
        self._buffer = bytearray()
        self._error: ProviderError | None = None
        self._ended = False
        self._closing = False
        self._closed = False
        self._sender = asyncio.create_task(self._send_loop(), name="cartesia-stt-send")
        self._receiver = asyncio.create_task(self._receive_loop(), name="cartesia-stt-receive")

    # ------------------------------------------------------------------ TranscriberStream
    async def send(self, audio: bytes) -> None:
        """Audio after the stream ended is dropped: `events()` reports why it ended."""
        if self._ended or self._closing:
            return
        self._buffer += audio
        while len(self._buffer) >= CHUNK_BYTES and not self._ended:
            chunk = bytes(self._buffer[:CHUNK_BYTES])
            del self._buffer[:CHUNK_BYTES]
            try:
                self._outbox.put_nowait(chunk)
            except asyncio.QueueFull:
                self._finish(ProviderError(PROVIDER, "connection stalled: audio is not going out"))

    async def events(self) -> AsyncIterator[SttEvent]:
        while True:
            event = await self._events.get()
            if event is None:
                self._events.put_nowait(None)
                if self._error is not None:
                    raise self._error
                return
            yield event

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing = True
        if not self._ended:
            tail, self._buffer = bytes(self._buffer), bytearray()
            with contextlib.suppress(asyncio.QueueFull):
                if tail:
                    self._outbox.put_nowait(tail)
                self._outbox.put_nowait(None)  # `close` once the queued audio is out
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._receiver), CLOSE_TIMEOUT)
        for task in (self._sender, self._receiver):
            task.cancel()
        await asyncio.gather(self._sender, self._receiver, return_exceptions=True)
        # Bounded: a half-open socket would hold the closing handshake for ten seconds.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._connection.close(), CLOSE_TIMEOUT)
        self._finish(None)

    # ------------------------------------------------------------------ tasks
    def _finish(self, error: ProviderError | None) -> None:
        if self._ended:
            return
        self._ended = True
        if error is not None and not self._closing:
            self._error = error
        self._events.put_nowait(None)

    async def _send_loop(self) -> None:
        try:
            while True:
                chunk = await self._outbox.get()
                if chunk is None:
                    await self._connection.send("close")
                    return
                await self._connection.send_raw(chunk)
        except (ConnectionClosed, OSError) as exc:
            self._finish(ProviderError(PROVIDER, f"send failed: {exc!r}"))

    async def _receive_loop(self) -> None:
        try:
            while True:
                event = await self._connection.recv()
                error = self._on_event(event)
                if error is not None:
                    self._finish(error)
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(self._connection.close(), CLOSE_TIMEOUT)
                    return
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else 1006
            reason = (exc.rcvd.reason if exc.rcvd else "") or "connection lost"
            # A clean close is expected after `close`; unasked, it still ends the stream.
            self._finish(
                ProviderError(
                    PROVIDER,
                    f"websocket closed ({code}): {reason}",
                    retryable=code not in FATAL_CLOSE_CODES,
                )
            )
        except (WebSocketException, OSError, ValueError) as exc:
            self._finish(ProviderError(PROVIDER, f"connection lost: {exc!r}"))

    def _on_event(self, event: Any) -> ProviderError | None:
        kind = getattr(event, "type", None)
        if kind == "transcript":
            text = (getattr(event, "text", "") or "").strip()
            final = bool(getattr(event, "is_final", False))
            if text:
                # Ink Whisper finalizes on silence: a final transcript ends the utterance.
                self._events.put_nowait(Transcript(text, final=final, end_of_turn=final))
            elif final:
                self._events.put_nowait(UtteranceEnd())
        elif kind == "error":
            status = getattr(event, "status_code", None)
            title = getattr(event, "title", "") or "error"
            message = getattr(event, "message", "") or ""
            logger.warning("cartesia stt error (%s): %s", status, title)
            return ProviderError(
                PROVIDER,
                f"{title}: {message}".strip(": "),
                retryable=_retryable_status(status if isinstance(status, int) else None),
            )
        # flush_done and done need nothing: the close that follows `done` ends the stream.
        return None
