"""Cartesia Sonic voices over the TTS websocket, through the cartesia SDK.

One websocket is kept per call (opened on the first piece of text, reopened after a drop) and
every piece of text gets its own context on it, as Cartesia recommends for voice agents: no
handshake per sentence, and a barge-in cancels just that context. Audio is asked for as raw
8 kHz mu-law, so chunks go to the caller untouched.

The SDK's connection object sends and parses messages; this module reads the socket itself
(`recv_bytes`) and routes events by `context_id`, because the SDK's own per-context reader never
wakes its waiters when the connection drops (a hang mid-sentence) and its reconnect reuses the
closed socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
from cartesia import AsyncCartesia, CartesiaError
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from talkturo.voice.providers.base import ProviderError, VoiceOptions

if TYPE_CHECKING:
    from cartesia.lib._tts import AsyncTTSResourceConnection, AsyncTTSResourceConnectionManager

logger = logging.getLogger(__name__)

PROVIDER = "cartesia"
OUTPUT_FORMAT = {"container": "raw", "encoding": "pcm_mulaw", "sample_rate": 8000}
# generation_config.speed bounds (sonic-3; earlier models ignore the field).
MIN_SPEED, MAX_SPEED = 0.6, 1.5
# How long one context may stay silent before the piece of text is given up.
RECEIVE_TIMEOUT = 20.0


def _retryable_status(status: int | None) -> bool:
    return status is None or status in (408, 429) or status >= 500


def _websocket_url(base_url: str) -> str:
    """http(s)://host → ws(s)://host: the SDK would otherwise always switch to wss."""
    url = httpx.URL(base_url)
    scheme = {"http": "ws", "https": "wss"}.get(url.scheme, url.scheme)
    return str(url.copy_with(scheme=scheme))


class _Connection:
    """One open websocket, its reader task and the contexts waiting on it."""

    def __init__(
        self, manager: AsyncTTSResourceConnectionManager, socket: AsyncTTSResourceConnection
    ) -> None:
        self.manager = manager
        self.socket = socket
        self.contexts: dict[str, asyncio.Queue[Any]] = {}
        self.closed = False
        self.reader = asyncio.create_task(self._read(), name="cartesia-tts-reader")

    async def _read(self) -> None:
        error: ProviderError
        try:
            while True:
                raw = await self.socket.recv_bytes()
                event = self.socket.parse_event(raw)
                queue = self.contexts.get(getattr(event, "context_id", None) or "")
                if queue is not None:
                    queue.put_nowait(event)
                elif event.type == "error":
                    # An error without a (live) context concerns the connection itself.
                    logger.warning("cartesia websocket error: %s", getattr(event, "title", ""))
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            error = ProviderError(PROVIDER, f"websocket closed ({code})", retryable=True)
        except (ValueError, TypeError) as exc:
            error = ProviderError(PROVIDER, f"unreadable message: {exc}", retryable=True)
        except OSError as exc:
            error = ProviderError(PROVIDER, f"connection lost: {exc}", retryable=True)
        self.closed = True
        for queue in self.contexts.values():
            queue.put_nowait(error)

    async def close(self) -> None:
        self.closed = True
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader
        with contextlib.suppress(ConnectionClosed, OSError):
            await self.socket.close()


class CartesiaSynthesizer:
    provider = PROVIDER

    def __init__(self, options: VoiceOptions, *, api_key: str, base_url: str | None) -> None:
        self.options = options
        self._client = AsyncCartesia(
            api_key=api_key,
            base_url=base_url,
            websocket_base_url=_websocket_url(base_url) if base_url else None,
            max_retries=0,
        )
        self._connection: _Connection | None = None
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ connection
    async def _connected(self) -> _Connection:
        async with self._lock:
            if self._connection is not None and not self._connection.closed:
                return self._connection
            if self._connection is not None:
                await self._connection.close()
                self._connection = None
            manager = self._client.tts.websocket_connect()
            try:
                socket = await manager.enter()
            except InvalidStatus as exc:
                status = exc.response.status_code
                raise ProviderError(
                    PROVIDER,
                    f"websocket refused (HTTP {status})",
                    retryable=_retryable_status(status),
                ) from exc
            except (InvalidHandshake, CartesiaError) as exc:
                raise ProviderError(PROVIDER, f"websocket handshake failed: {exc}") from exc
            except (OSError, TimeoutError) as exc:
                raise ProviderError(PROVIDER, f"cannot connect: {exc}") from exc
            self._connection = _Connection(manager, socket)
            return self._connection

    def _request(self, context_id: str, text: str) -> dict[str, Any]:
        options = self.options
        request: dict[str, Any] = {
            "context_id": context_id,
            "model_id": options.model,
            "transcript": text,
            "voice": {"mode": "id", "id": options.voice_id},
            "output_format": dict(OUTPUT_FORMAT),
            "continue": False,
        }
        if options.language:
            # Cartesia takes ISO 639-1 codes ("en"), not locales ("en-US").
            request["language"] = options.language.split("-")[0].lower()
        config: dict[str, Any] = {}
        if options.speed != 1.0:
            config["speed"] = min(MAX_SPEED, max(MIN_SPEED, options.speed))
        for key in ("volume", "emotion"):
            if key in options.extra:
                config[key] = options.extra[key]
        if config:
            request["generation_config"] = config
        return request

    # ------------------------------------------------------------------ synthesis
    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        connection = await self._connected()
        context_id = uuid.uuid4().hex
        queue: asyncio.Queue[Any] = asyncio.Queue()
        connection.contexts[context_id] = queue
        finished = False
        try:
            try:
                await connection.socket.send(self._request(context_id, text))  # type: ignore[arg-type]
            except (ConnectionClosed, OSError) as exc:
                connection.closed = True
                raise ProviderError(PROVIDER, f"send failed: {exc}") from exc
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), RECEIVE_TIMEOUT)
                except TimeoutError as exc:
                    raise ProviderError(PROVIDER, "no audio in time") from exc
                if isinstance(event, ProviderError):
                    finished = True
                    raise event
                if event.type == "chunk":
                    audio = event.audio
                    if audio:
                        yield audio
                elif event.type == "done":
                    finished = True
                    return
                elif event.type == "error":
                    finished = True
                    status = getattr(event, "status_code", None)
                    title = getattr(event, "title", None) or getattr(event, "error_code", "")
                    message = getattr(event, "message", None) or ""
                    raise ProviderError(
                        PROVIDER,
                        f"{title}: {message}".strip(": "),
                        retryable=_retryable_status(status),
                    )
        finally:
            connection.contexts.pop(context_id, None)
            if not finished and not connection.closed:
                # Stop the generation this piece of text started; the socket stays for the next.
                with contextlib.suppress(ConnectionClosed, OSError):
                    await connection.socket.send({"context_id": context_id, "cancel": True})

    async def close(self) -> None:
        async with self._lock:
            if self._connection is not None:
                await self._connection.close()
                self._connection = None
        await self._client.close()
