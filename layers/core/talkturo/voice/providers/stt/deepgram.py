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
from typing import Any

import httpx
from deepgram import AsyncDeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.environment import DeepgramClientEnvironment

from talkturo.voice.providers.base import (
    ProviderError,
    SpeechStarted,
    TranscriberOptions,
    TranscriberStream,
    Transcript,
    UtteranceEnd,
)
from talkturo.voice.providers.stt.streaming import (
    CONNECT_TIMEOUT,
    SocketStream,
    connect_error,
    refused,
)

logger = logging.getLogger(__name__)

PROVIDER = "deepgram"
ENDPOINTING_MS = 300  # silence that makes a final result `speech_final`
UTTERANCE_END_MS = 1000  # gap after the last word that triggers UtteranceEnd
# Frames waiting for the socket before the connection counts as stalled (10 s of 20 ms frames).
MAX_BACKLOG = 500


def _environment(base_url: str) -> DeepgramClientEnvironment:
    """DEEPGRAM_BASE_URL (http(s) or ws(s)) → the SDK's REST and websocket hosts."""
    url = httpx.URL(base_url.rstrip("/"))
    secure = url.scheme in ("https", "wss")
    rest = str(url.copy_with(scheme="https" if secure else "http"))
    socket = str(url.copy_with(scheme="wss" if secure else "ws"))
    return DeepgramClientEnvironment(base=rest, production=socket, agent=socket, agent_rest=rest)


def _connect_error(exc: BaseException) -> ProviderError:
    if isinstance(exc, ApiError):  # the SDK's form of a refused upgrade
        return refused(PROVIDER, exc.status_code)
    return connect_error(PROVIDER, exc)


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


class _DeepgramStream(SocketStream):
    """One live stream: the audio as it arrives (`send_media`), then `CloseStream`. Close code
    1008 means Deepgram could not decode the audio."""

    def __init__(self, socket: Any, stack: contextlib.AsyncExitStack, *, flux: bool) -> None:
        self._socket = socket
        self._stack = stack
        self._flux = flux
        self._server_error = ""  # Deepgram's Error message, reported with the close that follows
        super().__init__(PROVIDER, backlog=MAX_BACKLOG, chunk_bytes=None)

    # ------------------------------------------------------------------ socket
    async def _send_audio(self, chunk: bytes) -> None:
        await self._socket.send_media(chunk)

    async def _send_end(self) -> None:
        await self._socket.send_close_stream()

    async def _recv(self) -> Any:
        return await self._socket.recv()

    async def _close_socket(self) -> None:
        await self._stack.aclose()

    def _close_reason(self, received: str) -> str:
        return self._server_error or received or "no reason"

    # ------------------------------------------------------------------ messages
    def _on_message(self, message: Any) -> ProviderError | None:
        if self._flux:
            self._on_flux(message)
        else:
            self._on_nova(message)
        return None

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
