"""Alibaba Cloud Model Studio (DashScope) voices through the dashscope SDK.

Two families, chosen by the model name:

- CosyVoice (`cosyvoice-*`): the duplex inference websocket, through
  `dashscope.audio.tts_v2.SpeechSynthesizer`. The SDK is thread- and callback-based: it is
  driven from worker threads, and its callbacks hand audio to the event loop with
  `call_soon_threadsafe` into an asyncio queue. Audio is asked for as 8 kHz 16-bit PCM and
  encoded to mu-law here. One connection per piece of text (the SDK closes it after each task).
- Qwen-TTS (`qwen-tts`, `qwen3-tts-flash` …): HTTP with server-sent events, through
  `dashscope.AioMultiModalConversation` (natively async); the audio arrives as base64 chunks of
  24 kHz 16-bit PCM and is converted as it arrives.

`base_url` (DASHSCOPE_BASE_URL) is the host, e.g. https://dashscope.aliyuncs.com for Beijing or
a workspace host; the `/api-ws/v1/inference` and `/api/v1` paths are added (or kept if given).
Without it the international endpoints are used, like the Qwen language models' default.

The API key is handed to each request (Qwen-TTS: the `api_key` argument; CosyVoice: the
`Authorization` header, which the SDK lets per-instance headers override), so calls with
different keys do not share the SDK's module-level key. The CosyVoice constructor still insists
that module-level key is set, so it is filled in when (and only when) it is empty.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
import dashscope
import httpx
from dashscope.audio.tts_v2 import AudioFormat, ResultCallback, SpeechSynthesizer
from dashscope.common.error import DashScopeException, RequestFailure
from websocket import WebSocketBadStatusException, WebSocketConnectionClosedException

from talkturo.audio import PcmToMulaw
from talkturo.voice.providers.base import ProviderError, VoiceOptions

logger = logging.getLogger(__name__)

PROVIDER = "dashscope"
DEFAULT_BASE_URL = "https://dashscope-intl.aliyuncs.com"
WEBSOCKET_PATH = "/api-ws/v1/inference"
HTTP_PATH = "/api/v1"
COSYVOICE_RATE = 8000
QWEN_TTS_RATE = 24000
# CosyVoice `rate` bounds.
MIN_SPEED, MAX_SPEED = 0.5, 2.0
# Languages CosyVoice's `language_hints` accepts.
COSYVOICE_LANGUAGES = {"zh", "en", "fr", "de", "ja", "ko", "ru", "pt", "th", "id", "vi"}
QWEN_LANGUAGE_TYPES = {
    "zh": "Chinese",
    "en": "English",
    "de": "German",
    "it": "Italian",
    "pt": "Portuguese",
    "es": "Spanish",
    "ja": "Japanese",
    "ko": "Korean",
    "fr": "French",
    "ru": "Russian",
}
# Error codes that trying again will not fix.
PERMANENT_ERRORS = (
    "InvalidApiKey",
    "AccessDenied",
    "InvalidParameter",
    "Arrearage",
    "ModelNotFound",
    "DataInspectionFailed",
    "BadRequest",
    "NotFound",
)
RECEIVE_TIMEOUT = 20.0  # seconds of silence from the provider before giving up on a text
TASK_TIMEOUT_MS = 120_000  # how long the SDK's completion waiter may live
CANCEL_TIMEOUT_MS = 2_000  # how long to wait for task-finished after a cancel


def endpoints(base_url: str | None) -> tuple[str, str]:
    """(websocket URL, HTTP API base) from a host URL, with or without the API paths."""
    url = httpx.URL(base_url or DEFAULT_BASE_URL)
    secure = url.scheme in ("https", "wss")
    path = url.path.rstrip("/")
    for suffix in (WEBSOCKET_PATH, HTTP_PATH):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    netloc = url.netloc.decode("ascii")
    websocket = f"{'wss' if secure else 'ws'}://{netloc}{path}{WEBSOCKET_PATH}"
    http = f"{'https' if secure else 'http'}://{netloc}{path}{HTTP_PATH}"
    return websocket, http


def _error(code: str | None, message: str | None, status: int | None = None) -> ProviderError:
    code = code or ""
    permanent = code.startswith(PERMANENT_ERRORS) or (
        status is not None and 400 <= status < 500 and status not in (408, 429)
    )
    text = f"{code}: {message or ''}".strip(": ") or f"HTTP {status}"
    return ProviderError(PROVIDER, text, retryable=not permanent)


def _failure_from_message(message: Any) -> ProviderError:
    """A task-failed event (the raw JSON text the SDK passes to on_error)."""
    try:
        header = json.loads(message)["header"]
        return _error(header.get("error_code"), header.get("error_message"))
    except (TypeError, ValueError, KeyError):
        return ProviderError(PROVIDER, "task failed")


def _failure_from_exception(exc: BaseException) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, RequestFailure):
        return _error(exc.name, exc.message)
    if isinstance(exc, WebSocketBadStatusException):  # the handshake was refused
        return _error(None, f"websocket refused (HTTP {exc.status_code})", exc.status_code)
    if isinstance(exc, WebSocketConnectionClosedException):
        return ProviderError(PROVIDER, f"websocket closed ({getattr(exc, 'status_code', None)})")
    if isinstance(exc, DashScopeException):
        return ProviderError(PROVIDER, f"{type(exc).__name__}: {exc}", retryable=False)
    return ProviderError(PROVIDER, f"connection failed: {type(exc).__name__}: {exc}")


class _Done:
    """Marks the end of a task's audio in the queue."""


DONE = _Done()


class _Bridge(ResultCallback):
    """SDK callbacks (websocket thread) → the asyncio queue the generator reads."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any]) -> None:
        self.loop = loop
        self.queue = queue

    def put(self, item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    def on_data(self, data: bytes) -> None:
        self.put(bytes(data))

    def on_complete(self) -> None:
        self.put(DONE)

    def on_error(self, message: Any) -> None:
        self.put(_failure_from_message(message))


class _CosyVoiceSynthesizer(SpeechSynthesizer):
    """The SDK's synthesizer, also reporting what happens to the websocket itself: the SDK
    only logs a refused handshake or a dropped connection, which would leave the reader
    waiting for audio that never comes."""

    def __init__(self, bridge: _Bridge, **kwargs: Any) -> None:
        self.bridge = bridge
        super().__init__(callback=bridge, **kwargs)

    def on_error(self, ws: Any, error: Any) -> None:
        self.bridge.put(_failure_from_exception(error))

    def on_close(self, ws: Any, close_status_code: Any, close_msg: Any) -> None:
        self.bridge.put(ProviderError(PROVIDER, f"websocket closed ({close_status_code})"))
        # Frees the SDK's completion waiter thread when the connection ends early.
        self.complete_event.set()


class DashScopeSynthesizer:
    provider = PROVIDER

    def __init__(self, options: VoiceOptions, *, api_key: str, base_url: str | None) -> None:
        self.options = options
        self._api_key = api_key
        self._websocket_url, self._http_url = endpoints(base_url)
        self._session: aiohttp.ClientSession | None = None
        self._cleanups: set[asyncio.Future[None]] = set()

    @property
    def _language(self) -> str | None:
        language = self.options.language
        return language.split("-")[0].lower() if language else None

    def synthesize(self, text: str) -> AsyncIterator[bytes]:
        if self.options.model.startswith("cosyvoice"):
            return self._cosyvoice(text)
        return self._qwen_tts(text)

    # ------------------------------------------------------------------ CosyVoice
    def _new_synthesizer(self, bridge: _Bridge) -> _CosyVoiceSynthesizer:
        if dashscope.api_key is None:
            dashscope.api_key = self._api_key
        extra = self.options.extra
        kwargs: dict[str, Any] = {
            "model": self.options.model,
            "voice": self.options.voice_id,
            "format": AudioFormat.PCM_8000HZ_MONO_16BIT,
            "speech_rate": min(MAX_SPEED, max(MIN_SPEED, self.options.speed)),
            "volume": int(extra.get("volume", 50)),
            "pitch_rate": float(extra.get("pitch", 1.0)),
            "headers": {"Authorization": f"Bearer {self._api_key}"},
            "url": self._websocket_url,
        }
        if self._language in COSYVOICE_LANGUAGES:
            kwargs["language_hints"] = [self._language]
        if extra.get("instruction"):
            kwargs["instruction"] = str(extra["instruction"])
        return _CosyVoiceSynthesizer(bridge, **kwargs)

    async def _cosyvoice(self, text: str) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        bridge = _Bridge(loop, queue)
        try:
            synthesizer = self._new_synthesizer(bridge)
        except DashScopeException as exc:
            raise _failure_from_exception(exc) from exc
        started = threading.Event()

        def start() -> None:
            # Connects, sends run-task, waits for task-started, sends the text, then finish-task.
            try:
                synthesizer.streaming_call(text)
                synthesizer.async_streaming_complete(TASK_TIMEOUT_MS)
            finally:
                started.set()

        def start_done(future: asyncio.Future[None]) -> None:
            exc = None if future.cancelled() else future.exception()
            if exc is not None:
                bridge.put(_failure_from_exception(exc))

        loop.run_in_executor(None, start).add_done_callback(start_done)
        converter = PcmToMulaw(COSYVOICE_RATE)
        finished = False
        try:
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), RECEIVE_TIMEOUT)
                except TimeoutError as exc:
                    raise ProviderError(PROVIDER, "no audio in time") from exc
                if isinstance(item, bytes):
                    audio = converter.convert(item)
                    if audio:
                        yield audio
                elif item is DONE:
                    finished = True
                    return
                elif isinstance(item, ProviderError):
                    raise item
        finally:
            if not finished:
                self._track(loop.run_in_executor(None, _cancel, synthesizer, started))

    def _track(self, future: asyncio.Future[None]) -> None:
        self._cleanups.add(future)
        future.add_done_callback(self._cleanups.discard)

    # ------------------------------------------------------------------ Qwen-TTS
    async def _qwen_tts(self, text: str) -> AsyncIterator[bytes]:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        kwargs: dict[str, Any] = {}
        language_type = QWEN_LANGUAGE_TYPES.get(self._language or "")
        if language_type:
            kwargs["language_type"] = language_type
        converter = PcmToMulaw(QWEN_TTS_RATE)
        try:
            responses = await dashscope.AioMultiModalConversation.call(
                model=self.options.model,
                text=text,
                voice=self.options.voice_id,
                api_key=self._api_key,
                stream=True,
                base_address=self._http_url,
                session=self._session,
                **kwargs,
            )
            stream = cast(AsyncIterator[Any], responses)
            async for response in stream:
                if response.status_code != 200:
                    raise _error(response.code, response.message, response.status_code)
                output = response.output or {}
                data = (output.get("audio") or {}).get("data")
                if data:
                    audio = converter.convert(base64.b64decode(data))
                    if audio:
                        yield audio
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderError(PROVIDER, f"connection failed: {type(exc).__name__}") from exc
        except DashScopeException as exc:
            raise _failure_from_exception(exc) from exc

    # ------------------------------------------------------------------ lifecycle
    async def close(self) -> None:
        if self._cleanups:
            await asyncio.wait(set(self._cleanups), timeout=CANCEL_TIMEOUT_MS / 1000 + 5)
        if self._session is not None:
            await self._session.close()
            self._session = None


def _cancel(synthesizer: SpeechSynthesizer, started: threading.Event) -> None:
    """Stop an unfinished task (worker thread): finish-task with the cancel directive, then
    close the connection whatever the server answers."""
    started.wait(CANCEL_TIMEOUT_MS / 1000 + 10)
    try:
        synthesizer.streaming_cancel(CANCEL_TIMEOUT_MS)
    except (DashScopeException, ConnectionError, OSError) as exc:
        logger.debug("dashscope cancel: %s", type(exc).__name__)
    finally:
        synthesizer.close()
