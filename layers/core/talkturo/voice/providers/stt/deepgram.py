"""Deepgram live transcription through deepgram-sdk's async websocket clients.

Nova and older models stream to listen v1 (`/v1/listen`) with interim results, endpointing
(`speech_final` closes the caller's turn), utterance-end and speech-started events. Flux models
(`flux-*`) only exist on listen v2 (`/v2/listen`), where the model itself reports turns; both
are served here so every model the catalog offers works.

The telephone audio goes as it arrives (8 kHz mu-law, 20 ms frames), from a sender task so a
stalled connection never blocks the call loop; `CloseStream` ends the stream and Deepgram
answers with the last results before it closes the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from deepgram import AsyncDeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.environment import DeepgramClientEnvironment
from websockets.exceptions import ConnectionClosed, WebSocketException

from talkturo.voice.providers.base import (
    ProviderError,
    SpeechStarted,
    SttEvent,
    TranscriberOptions,
    TranscriberStream,
    Transcript,
    UtteranceEnd,
)

logger = logging.getLogger(__name__)

PROVIDER = "deepgram"
CONNECT_TIMEOUT = 10.0
# How long close() waits for Deepgram's last results after CloseStream.
CLOSE_TIMEOUT = 3.0
ENDPOINTING_MS = 300  # silence that makes a final result `speech_final`
UTTERANCE_END_MS = 1000  # gap after the last word that triggers UtteranceEnd
# Frames waiting for the socket before the connection counts as stalled (10 s of 20 ms frames).
MAX_BACKLOG = 500
# Close codes after which trying again cannot help (1008: Deepgram could not decode the audio).
FATAL_CLOSE_CODES = frozenset({1002, 1003, 1007, 1008})


def _retryable_status(status: int | None) -> bool:
    return status is None or status in (408, 429) or status >= 500


def _environment(base_url: str) -> DeepgramClientEnvironment:
    """DEEPGRAM_BASE_URL (http(s) or ws(s)) → the SDK's REST and websocket hosts."""
    url = httpx.URL(base_url.rstrip("/"))
    secure = url.scheme in ("https", "wss")
    rest = str(url.copy_with(scheme="https" if secure else "http"))
    socket = str(url.copy_with(scheme="wss" if secure else "ws"))
    return DeepgramClientEnvironment(base=rest, production=socket, agent=socket, agent_rest=rest)


def _connect_error(exc: BaseException) -> ProviderError:
    if isinstance(exc, ApiError):
        status = exc.status_code
        return ProviderError(
            PROVIDER, f"websocket refused (HTTP {status})", retryable=_retryable_status(status)
        )
    if isinstance(exc, TimeoutError):
        return ProviderError(PROVIDER, "connection timed out")
    return ProviderError(PROVIDER, f"cannot connect: {exc!r}")


class DeepgramTranscriber:
    provider = PROVIDER

    def __init__(self, api_key: str, base_url: str | None = None) -> None:
        self._api_key = api_key
        self._base_url = base_url

    def _client(self) -> AsyncDeepgramClient:
        if self._base_url:
            return AsyncDeepgramClient(
                api_key=self._api_key, environment=_environment(self._base_url)
            )
        return AsyncDeepgramClient(api_key=self._api_key)

    def _connection(
        self, options: TranscriberOptions
    ) -> contextlib.AbstractAsyncContextManager[Any]:
        client = self._client()
        keyterms = list(options.keyterms) or None
        if options.model.startswith("flux"):
            return client.listen.v2.connect(
                model=options.model,
                encoding="mulaw",
                sample_rate=options.sample_rate,
                keyterm=keyterms,
            )
        # Key-term prompting is Nova-3's; older models take (unweighted) keywords instead.
        nova3 = options.model.startswith("nova-3")
        return client.listen.v1.connect(
            model=options.model,
            language=options.language,
            encoding="mulaw",
            sample_rate=options.sample_rate,
            channels=1,
            interim_results="true",
            punctuate="true",
            smart_format="true",
            endpointing=ENDPOINTING_MS,
            utterance_end_ms=UTTERANCE_END_MS,
            vad_events="true",
            keyterm=keyterms if nova3 else None,
            keywords=None if nova3 else keyterms,
        )

    async def open(self, options: TranscriberOptions) -> TranscriberStream:
        stack = contextlib.AsyncExitStack()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                socket = await stack.enter_async_context(self._connection(options))
        except Exception as exc:  # no SDK or websockets error may escape
            with contextlib.suppress(Exception):
                await stack.aclose()
            raise _connect_error(exc) from exc
        return _DeepgramStream(socket, stack, flux=options.model.startswith("flux"))


class _DeepgramStream:
    """One live stream: a sender task feeding the socket, a receiver task turning Deepgram's
    messages into events; `None` on the event queue marks the end."""

    def __init__(self, socket: Any, stack: contextlib.AsyncExitStack, *, flux: bool) -> None:
        self._socket = socket
        self._stack = stack
        self._flux = flux
        self._events: asyncio.Queue[SttEvent | None] = asyncio.Queue()
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue(MAX_BACKLOG)
        self._error: ProviderError | None = None
        self._server_error = ""  # Deepgram's Error message, reported with the close that follows
        self._ended = False
        self._closing = False
        self._closed = False
        self._sender = asyncio.create_task(self._send_loop(), name="deepgram-stt-send")
        self._receiver = asyncio.create_task(self._receive_loop(), name="deepgram-stt-receive")

    # ------------------------------------------------------------------ TranscriberStream
    async def send(self, audio: bytes) -> None:
        """Audio after the stream ended is dropped: `events()` reports why it ended."""
        if self._ended or self._closing or not audio:
            return
        try:
            self._outbox.put_nowait(bytes(audio))
        except asyncio.QueueFull:
            self._finish(ProviderError(PROVIDER, "connection stalled: audio is not going out"))

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
        if not self._ended:
            with contextlib.suppress(asyncio.QueueFull):
                self._outbox.put_nowait(None)  # CloseStream once the queued audio is out
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._receiver), CLOSE_TIMEOUT)
        for task in (self._sender, self._receiver):
            task.cancel()
        await asyncio.gather(self._sender, self._receiver, return_exceptions=True)
        # Bounded: a half-open socket would hold the closing handshake for ten seconds.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._stack.aclose(), CLOSE_TIMEOUT)
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
                    await self._socket.send_close_stream()
                    return
                await self._socket.send_media(chunk)
        except (ConnectionClosed, OSError) as exc:
            self._finish(ProviderError(PROVIDER, f"send failed: {exc!r}"))

    async def _receive_loop(self) -> None:
        try:
            while True:
                message = await self._socket.recv()
                if self._flux:
                    self._on_flux(message)
                else:
                    self._on_nova(message)
        except ConnectionClosed as exc:
            # Expected after CloseStream (then _finish ignores it); a drop otherwise.
            code = exc.rcvd.code if exc.rcvd else 1006
            reason = self._server_error or (exc.rcvd.reason if exc.rcvd else "") or "no reason"
            self._finish(
                ProviderError(
                    PROVIDER,
                    f"websocket closed ({code}): {reason}",
                    retryable=code not in FATAL_CLOSE_CODES,
                )
            )
        except (WebSocketException, OSError, ValueError) as exc:
            self._finish(ProviderError(PROVIDER, f"connection lost: {exc!r}"))

    # ------------------------------------------------------------------ messages
    def _emit(self, text: str, *, final: bool, end_of_turn: bool, confidence: Any = None) -> None:
        text = text.strip()
        if text:
            conf = float(confidence) if isinstance(confidence, int | float) else None
            self._events.put_nowait(Transcript(text, final, end_of_turn, conf))
        elif final and end_of_turn:
            self._events.put_nowait(UtteranceEnd())  # the turn ended without new words

    def _on_nova(self, message: Any) -> None:
        kind = getattr(message, "type", None)
        if kind == "Results":
            alternatives = getattr(getattr(message, "channel", None), "alternatives", None) or []
            best = alternatives[0] if alternatives else None
            self._emit(
                getattr(best, "transcript", "") or "",
                final=bool(getattr(message, "is_final", False)),
                end_of_turn=bool(getattr(message, "speech_final", False)),
                confidence=getattr(best, "confidence", None),
            )
        elif kind == "SpeechStarted":
            self._events.put_nowait(SpeechStarted())
        elif kind == "UtteranceEnd":
            self._events.put_nowait(UtteranceEnd())
        elif kind == "Error":
            self._server_error = str(getattr(message, "description", "") or "error")
            logger.warning("deepgram stream error: %s", self._server_error)

    def _on_flux(self, message: Any) -> None:
        kind = getattr(message, "type", None)
        if kind == "TurnInfo":
            event = getattr(message, "event", None)
            text = getattr(message, "transcript", "") or ""
            if event == "StartOfTurn":
                self._events.put_nowait(SpeechStarted())
                self._emit(text, final=False, end_of_turn=False)
            elif event in ("Update", "EagerEndOfTurn"):
                self._emit(text, final=False, end_of_turn=False)
            elif event == "EndOfTurn":
                self._emit(text, final=True, end_of_turn=True)
        elif kind == "Error":
            self._server_error = str(getattr(message, "description", "") or "error")
            logger.warning("deepgram flux error: %s", self._server_error)
