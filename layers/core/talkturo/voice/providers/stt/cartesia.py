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
import logging
from typing import TYPE_CHECKING, Any, cast

import httpx
from cartesia import AsyncCartesia, omit

from talkturo.voice.providers.base import (
    ProviderError,
    TranscriberOptions,
    TranscriberStream,
    Transcript,
    UtteranceEnd,
)
from talkturo.voice.providers.stt.streaming import (
    CHUNK_BYTES,
    CONNECT_TIMEOUT,
    SocketStream,
    connect_error,
    retryable_status,
)

if TYPE_CHECKING:
    from cartesia.resources.stt.manual_finalize import AsyncManualFinalizeResourceConnection

logger = logging.getLogger(__name__)

PROVIDER = "cartesia"
MAX_BACKLOG = 100  # chunks (10 s) waiting for the socket before it counts as stalled


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
        except Exception as exc:  # no SDK or websockets error may escape
            raise connect_error(PROVIDER, exc) from exc
        return _CartesiaStream(connection)


class _CartesiaStream(SocketStream):
    """One live stream: 100 ms chunks as binary messages, then `close`; Cartesia answers with
    the last transcripts and `done`, then closes."""

    def __init__(self, connection: AsyncManualFinalizeResourceConnection) -> None:
        self._connection = connection
        super().__init__(PROVIDER, backlog=MAX_BACKLOG, chunk_bytes=CHUNK_BYTES)

    # ------------------------------------------------------------------ socket
    async def _send_audio(self, chunk: bytes) -> None:
        await self._connection.send_raw(chunk)

    async def _send_end(self) -> None:
        await self._connection.send("close")

    async def _recv(self) -> Any:
        return await self._connection.recv()

    async def _close_socket(self) -> None:
        await self._connection.close()

    # ------------------------------------------------------------------ messages
    def _on_message(self, event: Any) -> ProviderError | None:
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
                retryable=retryable_status(status if isinstance(status, int) else None),
            )
        # flush_done and done need nothing: the close that follows `done` ends the stream.
        return None
