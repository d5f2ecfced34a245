"""AssemblyAI Universal-Streaming (v3) through the assemblyai SDK's asyncio streaming client.

The SDK's `AsyncRealTimeTranscriber` owns the websocket (its own read and write tasks and write
queue, so `send()` never waits on the network) and calls back per message; this module turns
the callbacks into events. AssemblyAI takes 50-1000 ms of audio per message, so the call's
20 ms frames are gathered into 100 ms chunks.

A turn's transcript is cumulative and final once `end_of_turn` is set. With `format_turns` the
unformatted end of turn comes first (passed on as interim text) and a formatted copy follows,
which becomes the final transcript and closes the turn: punctuated, cased, numbers written as
digits, which is what the language model and the call record read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import httpx
from assemblyai.streaming.v3 import (
    AsyncRealTimeTranscriber,
    Encoding,
    RealTimeError,
    RealTimeEvents,
    RealTimeParameters,
    RealTimeTranscriberOptions,
    TurnEvent,
)
from pydantic import ValidationError

from talkturo.audio import SAMPLE_RATE, SILENCE_BYTE
from talkturo.voice.providers.base import (
    ProviderError,
    SpeechStarted,
    TranscriberOptions,
    TranscriberStream,
    Transcript,
    UtteranceEnd,
)
from talkturo.voice.providers.stt.streaming import (
    CHUNK_BYTES,
    CLOSE_TIMEOUT,
    CONNECT_TIMEOUT,
    Chunker,
    StreamBase,
    refused,
)

logger = logging.getLogger(__name__)

PROVIDER = "assemblyai"
# How long open() waits for the session's Begin message (auth is checked after the upgrade).
BEGIN_TIMEOUT = 10.0
# On top of CLOSE_TIMEOUT (the SDK's wait for the last turn and Termination after Terminate):
# the SDK's own wait for its writer (2 s) and the closing handshake.
DISCONNECT_SLACK = 3.0
FORMAT_TURNS = True
MIN_CHUNK_BYTES = SAMPLE_RATE // 20  # 50 ms: AssemblyAI's lower bound per message
# Close codes after which the same request cannot succeed: bad auth (1008), invalid message
# (3006), audio outside the accepted chunk size or rate (3007), and v2-era account errors.
FATAL_CODES = frozenset({1002, 1003, 1007, 1008, 3006, 3007, 4000, 4001, 4002, 4003, 4101})


def _api_host(base_url: str | None) -> str | None:
    """ASSEMBLYAI_BASE_URL → what the SDK takes: a bare host (wss implied) or a ws(s) origin."""
    if not base_url:
        return None
    url = httpx.URL(base_url.rstrip("/"))
    if url.scheme in ("http", "ws"):
        return str(url.copy_with(scheme="ws"))
    if url.scheme in ("https", "wss"):
        return str(url.copy_with(scheme="wss"))
    return base_url


def _provider_error(error: BaseException) -> ProviderError:
    code = getattr(error, "code", None)
    message = str(error) or "connection failed"
    if not isinstance(code, int):
        return ProviderError(PROVIDER, message)
    if 400 <= code < 600:  # the upgrade request itself was refused
        return refused(PROVIDER, code)
    # 1008 also covers the concurrency limit, which clears by itself.
    retryable = code not in FATAL_CODES or "concurrent" in message.lower()
    return ProviderError(PROVIDER, f"stream closed ({code}): {message}", retryable=retryable)


class AssemblyAITranscriber:
    provider = PROVIDER

    def __init__(self, api_key: str, base_url: str | None = None) -> None:
        self._api_key = api_key
        self._api_host = _api_host(base_url)

    async def open(self, options: TranscriberOptions) -> TranscriberStream:
        try:
            params = RealTimeParameters(
                sample_rate=options.sample_rate,
                encoding=Encoding.pcm_mulaw,
                speech_model=options.model,  # validated (and converted) by pydantic
                format_turns=FORMAT_TURNS,
                keyterms_prompt=list(options.keyterms) or None,
            )
        except ValidationError as exc:
            raise ProviderError(
                PROVIDER, f"unsupported settings (model {options.model!r})", retryable=False
            ) from exc
        settings: dict[str, Any] = {
            "api_key": self._api_key,
            "connect_timeout": CONNECT_TIMEOUT,
            "max_connection_retries": 0,  # retrying is the call loop's decision
            "terminate_timeout": CLOSE_TIMEOUT,
        }
        if self._api_host:
            settings["api_host"] = self._api_host
        client = AsyncRealTimeTranscriber(RealTimeTranscriberOptions(**settings))
        stream = _AssemblyAIStream(client)
        await stream.start(params)
        return stream


class _AssemblyAIStream(StreamBase):
    def __init__(self, client: AsyncRealTimeTranscriber) -> None:
        super().__init__(PROVIDER)
        self._client = client
        self._began = asyncio.Event()
        self._chunker = Chunker(CHUNK_BYTES)
        self._pending_turn: TurnEvent | None = None  # unformatted end of turn awaiting its copy
        self._watcher: asyncio.Task[None] | None = None
        client.on(RealTimeEvents.Begin, self._on_begin)
        client.on(RealTimeEvents.Turn, self._on_turn)
        client.on(RealTimeEvents.SpeechStarted, self._on_speech_started)
        client.on(RealTimeEvents.Termination, self._on_termination)
        client.on(RealTimeEvents.Error, self._on_error)

    async def start(self, params: RealTimeParameters) -> None:
        try:
            await self._client.connect(params)
            # The SDK reports a refused upgrade through on_error; Begin proves the key worked.
            await asyncio.wait_for(self._began.wait(), BEGIN_TIMEOUT)
        except TimeoutError as exc:
            await self._shutdown(terminate=False)
            raise ProviderError(PROVIDER, "no session began in time") from exc
        except Exception as exc:  # no SDK or websockets error may escape
            await self._shutdown(terminate=False)
            raise ProviderError(PROVIDER, f"cannot connect: {exc!r}") from exc
        if self._error is not None:
            await self._shutdown(terminate=False)
            raise self._error
        self._watcher = asyncio.create_task(self._watch(), name="assemblyai-stt-watch")

    # ------------------------------------------------------------------ TranscriberStream
    async def send(self, audio: bytes) -> None:
        """Audio after the stream ended is dropped: `events()` reports why it ended."""
        if self._ended or self._closing:
            return
        for chunk in self._chunker.push(audio):  # also splits long chunks (1 s at most)
            await self._client.stream(chunk)  # only queues: the SDK's writer sends it

    async def _flush_and_close(self) -> None:
        tail = b"" if self._ended else self._chunker.rest()
        if tail:
            # The last chunk, padded with silence up to the minimum AssemblyAI accepts.
            with contextlib.suppress(Exception):
                await self._client.stream(tail.ljust(MIN_CHUNK_BYTES, bytes([SILENCE_BYTE])))
        await self._shutdown(terminate=not self._ended)
        self._flush_pending()

    async def _shutdown(self, *, terminate: bool) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        try:
            # Sends Terminate and waits (up to terminate_timeout) for the last turn and
            # Termination before it closes the socket.
            await asyncio.wait_for(
                self._client.disconnect(terminate=terminate), CLOSE_TIMEOUT + DISCONNECT_SLACK
            )
        except Exception as exc:  # noqa: BLE001 - closing must not raise
            logger.debug("assemblyai disconnect failed: %r", exc)

    # ------------------------------------------------------------------ state
    def _finish(self, error: ProviderError | None) -> None:
        super()._finish(error)
        self._began.set()  # start() learns of the end

    async def _watch(self) -> None:
        """Ends the stream when the SDK stops without a callback (a clean close the server
        started without Termination)."""
        stopped = getattr(self._client, "_stop_event", None)
        if stopped is None:
            return
        await stopped.wait()
        await asyncio.sleep(0)  # callbacks of the same message run first
        self._flush_pending()
        self._fail("stream ended unexpectedly")

    # ------------------------------------------------------------------ callbacks
    def _on_begin(self, _client: Any, _event: Any) -> None:
        self._began.set()

    def _on_speech_started(self, _client: Any, _event: Any) -> None:
        self._events.put_nowait(SpeechStarted())

    def _on_turn(self, _client: Any, event: TurnEvent) -> None:
        pending = self._pending_turn
        if pending is not None and pending.turn_order != event.turn_order:
            self._flush_pending()  # its formatted copy never came
        text = event.transcript.strip()
        if not event.end_of_turn:
            if text:
                self._events.put_nowait(Transcript(text, final=False))
        elif FORMAT_TURNS and not event.turn_is_formatted:
            self._pending_turn = event
            if text:
                self._events.put_nowait(Transcript(text, final=False))
        else:
            self._pending_turn = None
            self._emit_final(event)

    def _emit_final(self, event: TurnEvent) -> None:
        text = event.transcript.strip()
        if not text:
            self._events.put_nowait(UtteranceEnd())
            return
        confidences = [word.confidence for word in event.words]
        confidence = sum(confidences) / len(confidences) if confidences else None
        self._events.put_nowait(
            Transcript(text, final=True, end_of_turn=True, confidence=confidence)
        )

    def _flush_pending(self) -> None:
        if self._pending_turn is not None:
            event, self._pending_turn = self._pending_turn, None
            self._emit_final(event)

    def _on_termination(self, _client: Any, _event: Any) -> None:
        self._flush_pending()
        self._fail("session terminated by AssemblyAI")

    def _on_error(self, _client: Any, error: RealTimeError) -> None:
        logger.warning("assemblyai stream error (%s)", getattr(error, "code", None))
        self._finish(_provider_error(error))
