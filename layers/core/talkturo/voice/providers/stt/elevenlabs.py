"""ElevenLabs Scribe realtime speech-to-text through the elevenlabs SDK
(`speech_to_text.realtime`).

The session asks for `ulaw_8000` audio, so phone frames go unconverted (base64 inside
`input_audio_chunk` messages, which the SDK builds), gathered into 100 ms chunks. Commits come
from ElevenLabs' voice activity detection: a committed transcript is the end of an utterance,
partial transcripts are the text since the last commit.

The SDK reports through callbacks (its own task reads the socket); errors arrive as messages
and the close follows, so an error message is remembered and reported when the socket closes.
open() returns once `session_started` arrived, so a refused key fails there.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from typing import Any

from elevenlabs.client import AsyncElevenLabs
from elevenlabs.realtime import (
    AudioFormat,
    CommitStrategy,
    RealtimeAudioOptions,
    RealtimeConnection,
    RealtimeEvents,
)
from websockets.exceptions import ConnectionClosed

from talkturo.voice.providers.base import (
    ProviderError,
    TranscriberOptions,
    TranscriberStream,
    Transcript,
    UtteranceEnd,
)
from talkturo.voice.providers.stt.streaming import (
    CHUNK_BYTES,
    CLOSE_TIMEOUT,
    CONNECT_TIMEOUT,
    QueuedStream,
    connect_error,
)

logger = logging.getLogger(__name__)

PROVIDER = "elevenlabs"
MAX_BACKLOG = 100  # chunks (10 s) waiting for the socket before it counts as stalled
# Silence (seconds) after which ElevenLabs' VAD commits the utterance (allowed: 0.3-3.0).
VAD_SILENCE_SECS = 0.5
# Error messages after which the same request cannot succeed.
FATAL_ERRORS = frozenset(
    {
        "auth_error",
        "quota_exceeded",
        "unaccepted_terms",
        "invalid_request",
        "input_error",
        "chunk_size_exceeded",
    }
)


class ElevenLabsTranscriber:
    provider = PROVIDER

    def __init__(self, api_key: str, base_url: str | None = None) -> None:
        self._api_key = api_key
        self._base_url = base_url

    async def open(self, options: TranscriberOptions) -> TranscriberStream:
        client = AsyncElevenLabs(api_key=self._api_key, base_url=self._base_url)
        settings: RealtimeAudioOptions = {
            "model_id": options.model,
            "audio_format": AudioFormat.ULAW_8000,
            "sample_rate": options.sample_rate,
            "commit_strategy": CommitStrategy.VAD,
            "vad_silence_threshold_secs": VAD_SILENCE_SECS,
            "language_code": options.language,
        }
        if options.keyterms:
            settings["keyterms"] = list(options.keyterms)
        try:
            # Awaited in this task (not wait_for's): the handlers below must be on before the
            # SDK's reader first runs, or session_started would go unheard.
            async with asyncio.timeout(CONNECT_TIMEOUT):
                connection = await client.speech_to_text.realtime.connect(settings)
        except Exception as exc:  # no SDK or websockets error may escape
            raise connect_error(PROVIDER, exc) from exc
        stream = _ElevenLabsStream(connection)
        await stream.started()
        return stream


class _ElevenLabsStream(QueuedStream):
    # The SDK's send raises RuntimeError when its socket is not connected.
    send_errors = (ConnectionClosed, OSError, RuntimeError)

    def __init__(self, connection: RealtimeConnection) -> None:
        self._connection = connection
        self._began = asyncio.Event()
        self._server_error: tuple[str, str] | None = None  # (message_type, error) until the close
        super().__init__(PROVIDER, backlog=MAX_BACKLOG, chunk_bytes=CHUNK_BYTES)
        connection.on(RealtimeEvents.SESSION_STARTED, self._on_session_started)
        connection.on(RealtimeEvents.PARTIAL_TRANSCRIPT, self._on_partial)
        connection.on(RealtimeEvents.COMMITTED_TRANSCRIPT, self._on_committed)
        connection.on(RealtimeEvents.ERROR, self._on_error)
        connection.on(RealtimeEvents.CLOSE, self._on_close)

    async def started(self) -> None:
        try:
            await asyncio.wait_for(self._began.wait(), CONNECT_TIMEOUT)
        except TimeoutError:
            self._fail("no session started in time")
        if self._error is not None:
            error = self._error
            await self.close()
            raise error

    # ------------------------------------------------------------------ stream
    async def _send_audio(self, chunk: bytes) -> None:
        await self._connection.send({"audio_base_64": base64.b64encode(chunk).decode("ascii")})

    async def _flush_and_close(self) -> None:
        """Sends what is buffered, then closes the socket (the API has no closing message;
        the SDK closes with 1000)."""
        self._queue_end(b"" if self._ended else self._chunker.rest())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._sender), CLOSE_TIMEOUT)
        self._sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sender
        try:
            await asyncio.wait_for(self._connection.close(), CLOSE_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - closing must not raise
            logger.debug("elevenlabs close failed: %r", exc)

    def _finish(self, error: ProviderError | None) -> None:
        super()._finish(error)
        self._began.set()  # started() learns of the end

    # ------------------------------------------------------------------ callbacks
    def _on_session_started(self, _data: dict[str, Any]) -> None:
        self._began.set()

    def _on_partial(self, data: dict[str, Any]) -> None:
        text = str(data.get("text") or "").strip()
        if text:
            self._events.put_nowait(Transcript(text, final=False))

    def _on_committed(self, data: dict[str, Any]) -> None:
        text = str(data.get("text") or "").strip()
        # VAD commits when the caller paused: the utterance is over.
        if text:
            self._events.put_nowait(Transcript(text, final=True, end_of_turn=True))
        else:
            self._events.put_nowait(UtteranceEnd())

    def _on_error(self, data: dict[str, Any]) -> None:
        kind = str(data.get("message_type") or "")
        detail = str(data.get("error") or "")
        logger.warning("elevenlabs stt error: %s", kind or detail)
        # Without a message type it is the SDK's reader failing (a dropped socket): a
        # provider's error message that came before it says more.
        if kind or self._server_error is None:
            self._server_error = (kind, detail)

    def _on_close(self, info: dict[str, Any] | None = None) -> None:
        code = (info or {}).get("code")
        reason = (info or {}).get("reason") or ""
        if self._server_error is not None:
            kind, detail = self._server_error
            message = f"{kind}: {detail}" if kind else f"connection lost: {detail}"
            retryable = kind not in FATAL_ERRORS
        else:
            message = f"websocket closed ({code}): {reason or 'connection lost'}"
            retryable = True
        self._fail(message, retryable=retryable)
