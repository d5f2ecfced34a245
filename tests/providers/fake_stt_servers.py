"""Local stand-ins for the four streaming speech-to-text services, speaking each one's
websocket protocol on 127.0.0.1 (a free port), so the adapters are exercised through the real
SDKs. Each fake checks what the real service checks (the key, the query, the shape and size of
what arrives), records every connection (query, headers, audio bytes, control messages, the
close code) and plays a per-test script: wait for N bytes of audio, send a message, drop the
TCP connection, close with a code.

Anything the fake finds wrong is appended to `problems`; tests assert it stays empty.

The protocols, as documented by the providers and as the installed SDKs build them:

Deepgram, listen v1 (https://developers.deepgram.com/docs/understand-endpointing-interim-results,
https://developers.deepgram.com/docs/utterance-end, https://developers.deepgram.com/docs/close-stream,
deepgram-sdk 7.17 `listen/v1/client.py`, `listen/v1/socket_client.py`, `listen/v1/types/`):
- `GET /v1/listen?model&language&encoding=mulaw&sample_rate=8000&channels=1&interim_results=true
  &punctuate=true&smart_format=true&endpointing=<ms>&utterance_end_ms=<ms>&vad_events=true`
  plus `keyterm=` repeated (Nova-3) or `keywords=` repeated (older models).
- Header `Authorization: Token <key>`; a bad key is refused at the upgrade with HTTP 401.
- Client: binary audio frames; `{"type":"CloseStream"}` (`{"type":"KeepAlive"}` and
  `{"type":"Finalize"}` also exist, unused here). On CloseStream the server sends the last
  `Results` and a `Metadata` message, then closes with 1000.
- Server: `{"type":"Results","channel_index":[0,1],"duration","start","is_final","speech_final",
  "channel":{"alternatives":[{"transcript","confidence","words":[]}]},"metadata":{...}}`,
  `{"type":"SpeechStarted","channel":[0],"timestamp"}`,
  `{"type":"UtteranceEnd","channel":[0,1],"last_word_end"}`, `{"type":"Metadata",...}`.
  Errors close the socket: 1008 (DATA-0000, undecodable audio), 1011 (NET-0000/NET-0001).
Deepgram Flux, listen v2 (https://developers.deepgram.com/docs/flux/close-stream):
- `GET /v2/listen?model=flux-general-en&encoding=mulaw&sample_rate=8000[&keyterm=…]`, same
  auth. Server: `{"type":"Connected","request_id","sequence_id":0}` first, then
  `{"type":"TurnInfo","event":"StartOfTurn|Update|EagerEndOfTurn|TurnResumed|EndOfTurn",
  "turn_index","audio_window_start","audio_window_end","transcript","words":[],
  "end_of_turn_confidence","request_id","sequence_id"}`. CloseStream: the server decodes what
  it has, then closes.

AssemblyAI Universal-Streaming v3 (https://www.assemblyai.com/docs/streaming/message-sequence,
https://assemblyai.com/docs/streaming/common-session-errors-and-closures, assemblyai 1.8.2
`streaming/v3/_base.py`):
- `GET /v3/ws?sample_rate=8000&encoding=pcm_mulaw&speech_model=<model>&format_turns=True
  [&keyterms_prompt=<JSON list>]` (the SDK writes booleans as Python does and lists as JSON).
- Header `Authorization: <key>` (no scheme). A bad key: the upgrade succeeds, the server sends
  `{"type":"Error","error_code":1008,"error":"Unauthorized Connection: …"}` and closes 1008.
- Server first sends `{"type":"Begin","id","expires_at"}`; then `{"type":"SpeechStarted",
  "timestamp"}` and `{"type":"Turn","turn_order","turn_is_formatted","end_of_turn",
  "transcript","end_of_turn_confidence","words":[{"start","end","confidence","text",
  "word_is_final"}]}`; with format_turns the end of a turn is followed by a formatted copy.
- Client: binary audio, each message 50-1000 ms (else Error 3007 and close 3007);
  `{"type":"Terminate"}` → in-flight turns, `{"type":"Termination","audio_duration_seconds",
  "session_duration_seconds"}`, close 1000.

Cartesia Ink, `/stt/websocket` (https://docs.cartesia.ai/api-reference/stt/stt,
https://docs.cartesia.ai/use-the-api/stt/common-pitfalls, cartesia 4.2 `resources/stt/
manual_finalize.py`):
- `GET /stt/websocket?encoding=pcm_mulaw&model=ink-whisper&sample_rate=8000&language=<iso>
  [&keyterm=…]`; headers `Authorization: Bearer <key>` and `cartesia-version` (the SDK sends
  2026-08-14). A bad key is refused at the upgrade (HTTP 401).
- Client: binary audio (100 ms chunks suggested); text commands `finalize` (→ `flush_done`) and
  `close` (→ remaining transcripts, `{"type":"done","request_id"}`, close 1000).
- Server: `{"type":"transcript","request_id","text","is_final","duration","language",
  "words"}`; text is a delta since the last final transcript. Errors:
  `{"type":"error","status_code","title","message","error_code","request_id"}`.

ElevenLabs Scribe realtime (https://elevenlabs.io/docs/api-reference/speech-to-text/
v-1-speech-to-text-realtime, elevenlabs 2.78 `realtime/scribe.py`, `realtime/connection.py`):
- `GET /v1/speech-to-text/realtime?model_id=scribe_v2_realtime&audio_format=ulaw_8000
  &commit_strategy=vad&vad_silence_threshold_secs=<s>&language_code=<iso>
  &include_timestamps=false[&keyterms=… repeated]`; header `xi-api-key: <key>`.
- Server first sends `{"message_type":"session_started","session_id","config":{...}}`; then
  `{"message_type":"partial_transcript","text"}` and `{"message_type":"committed_transcript",
  "text"}`. Errors are messages (`auth_error`, `quota_exceeded`, `rate_limited`, `input_error`,
  … with an `error` field) after which the server closes; a bad key gets `auth_error` (a 1008
  close here).
- Client: `{"message_type":"input_audio_chunk","audio_base_64","commit":false,
  "sample_rate":8000,"previous_text":null}`; no closing message (the client closes, 1000).
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

API_KEY = "test-stt-key"
WAIT = 5.0  # seconds any wait in a fake may take before the test fails

# ---------------------------------------------------------------------------- script steps


@dataclass(frozen=True)
class AfterAudio:
    """Wait until the connection has received this many audio bytes in all."""

    nbytes: int


@dataclass(frozen=True)
class Send:
    """Send one message (dicts as JSON text)."""

    message: dict[str, Any] | str


@dataclass(frozen=True)
class Drop:
    """Cut the TCP connection without a closing handshake."""


@dataclass(frozen=True)
class CloseWith:
    code: int
    reason: str = ""


Step = AfterAudio | Send | Drop | CloseWith


# ---------------------------------------------------------------------------- records


@dataclass
class Session:
    """What one client connection did."""

    path: str
    query: dict[str, list[str]]
    headers: Headers
    audio: bytearray = field(default_factory=bytearray)
    chunk_sizes: list[int] = field(default_factory=list)
    controls: list[Any] = field(default_factory=list)  # non-audio messages, parsed
    log: list[str] = field(default_factory=list)  # "audio" / the control's name, in order
    close_code: int | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    _audio_arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def add_audio(self, chunk: bytes) -> None:
        self.audio += chunk
        self.chunk_sizes.append(len(chunk))
        if not self.log or self.log[-1] != "audio":
            self.log.append("audio")
        self._audio_arrived.set()

    async def wait_audio(self, nbytes: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.audio) < nbytes:
                self._audio_arrived.clear()
                await self._audio_arrived.wait()

    async def wait_closed(self) -> None:
        async with asyncio.timeout(WAIT):
            await self.closed.wait()


# ---------------------------------------------------------------------------- base


class FakeSttServer:
    """One provider's websocket endpoint. Subclasses say how it authenticates, what it checks,
    how audio arrives and how the client's control messages are answered."""

    paths: tuple[str, ...] = ()

    def __init__(
        self,
        script: Iterable[Step] = (),
        *,
        api_key: str = API_KEY,
        on_close: Iterable[dict[str, Any]] = (),
        refuse_with: int | None = None,
    ) -> None:
        self.script = list(script)
        self.api_key = api_key
        self.refuse_with = refuse_with  # an HTTP status every upgrade gets (429, 503 …)
        self.on_close = list(on_close)  # sent in answer to the client's closing message
        self.sessions: list[Session] = []
        self.problems: list[str] = []
        self.refused = 0
        self._server: Server | None = None
        self._connected = asyncio.Event()

    async def __aenter__(self) -> FakeSttServer:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, process_request=self._process_request
        )
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def session(self, index: int = 0) -> Session:
        async with asyncio.timeout(WAIT):
            while len(self.sessions) <= index:
                self._connected.clear()
                await self._connected.wait()
        return self.sessions[index]

    def problem(self, text: str) -> None:
        self.problems.append(text)

    # ------------------------------------------------------------------ hooks
    def refuse(self, path: str, headers: Headers, query: dict[str, list[str]]) -> int | None:
        """An HTTP status to refuse the upgrade with, or None."""
        return None

    def check(self, session: Session) -> None:
        """Check the query and headers of an accepted connection."""

    async def opened(self, ws: ServerConnection, session: Session) -> bool:
        """First messages; False when the connection was refused after the upgrade."""
        return True

    def audio_of(self, session: Session, message: str | bytes) -> bytes | None:
        return message if isinstance(message, bytes) else None

    async def control(self, ws: ServerConnection, session: Session, message: str) -> None:
        session.controls.append(message)
        session.log.append(message)

    # ------------------------------------------------------------------ plumbing
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path not in self.paths:
            self.problem(f"unexpected path {parts.path}")
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        status = self.refuse_with or self.refuse(parts.path, request.headers, parse_qs(parts.query))
        if status is not None:
            self.refused += 1
            return connection.respond(status, "refused\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        parts = urlsplit(ws.request.path)
        session = Session(parts.path, parse_qs(parts.query), ws.request.headers)
        self.sessions.append(session)
        self._connected.set()
        self.check(session)
        player: asyncio.Task[None] | None = None
        try:
            if not await self.opened(ws, session):
                return
            player = asyncio.create_task(self._play(ws, session))
            async for message in ws:
                chunk = self.audio_of(session, message)
                if chunk is not None:
                    session.add_audio(chunk)
                    await self.audio_received(ws, session, chunk)
                elif isinstance(message, str):
                    await self.control(ws, session, message)
                else:
                    self.problem("unexpected binary message")
        except ConnectionClosed:
            pass
        finally:
            if player is not None:
                player.cancel()
            session.close_code = ws.close_code
            session.closed.set()

    async def audio_received(self, ws: ServerConnection, session: Session, chunk: bytes) -> None:
        """Per-chunk checks (sizes) a provider enforces."""

    async def _play(self, ws: ServerConnection, session: Session) -> None:
        try:
            for step in self.script:
                if isinstance(step, AfterAudio):
                    await session.wait_audio(step.nbytes)
                elif isinstance(step, Send):
                    await send(ws, step.message)
                elif isinstance(step, Drop):
                    ws.transport.abort()
                    return
                else:
                    await ws.close(step.code, step.reason)
                    return
        except TimeoutError:
            self.problem(f"script timed out with {len(session.audio)} audio bytes received")
        except ConnectionClosed:
            pass

    async def finish(self, ws: ServerConnection, closing: Iterable[dict[str, Any]]) -> None:
        """The answer to the client's closing message: final messages, then a clean close."""
        for message in [*self.on_close, *closing]:
            await send(ws, message)
        await ws.close(1000)


async def send(ws: ServerConnection, message: dict[str, Any] | str) -> None:
    await ws.send(message if isinstance(message, str) else json.dumps(message))


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _parse(message: str) -> dict[str, Any] | None:
    parsed = _json_or_none(message)
    return parsed if isinstance(parsed, dict) else None


# ---------------------------------------------------------------------------- Deepgram


class FakeDeepgram(FakeSttServer):
    paths = ("/v1/listen", "/v2/listen")

    def refuse(self, path: str, headers: Headers, query: dict[str, list[str]]) -> int | None:
        return None if headers.get("Authorization") == f"Token {self.api_key}" else 401

    def check(self, session: Session) -> None:
        expected = {"encoding": "mulaw", "sample_rate": "8000"}
        if session.path == "/v1/listen":
            expected.update(
                channels="1",
                interim_results="true",
                punctuate="true",
                smart_format="true",
                vad_events="true",
            )
            for name in ("language", "endpointing", "utterance_end_ms"):
                if not session.param(name):
                    self.problem(f"missing {name}")
        if not session.param("model"):
            self.problem("missing model")
        for name, value in expected.items():
            if session.param(name) != value:
                self.problem(f"{name}={session.param(name)!r}, expected {value!r}")

    async def opened(self, ws: ServerConnection, session: Session) -> bool:
        if session.path == "/v2/listen":
            await send(ws, {"type": "Connected", "request_id": str(uuid.uuid4()), "sequence_id": 0})
        return True

    async def control(self, ws: ServerConnection, session: Session, message: str) -> None:
        parsed = _parse(message)
        kind = parsed.get("type") if parsed else None
        session.controls.append(parsed)
        session.log.append(str(kind))
        if kind == "CloseStream":
            metadata = {
                "type": "Metadata",
                "transaction_key": "deprecated",
                "request_id": str(uuid.uuid4()),
                "sha256": "0" * 64,
                "created": "2026-01-01T00:00:00.000Z",
                "duration": len(session.audio) / 8000,
                "channels": 1,
            }
            await self.finish(ws, [metadata] if session.path == "/v1/listen" else [])
        elif kind not in ("KeepAlive", "Finalize"):
            self.problem(f"unexpected message {message!r}")


def deepgram_results(
    text: str, *, is_final: bool, speech_final: bool = False, confidence: float = 0.98
) -> dict[str, Any]:
    return {
        "type": "Results",
        "channel_index": [0, 1],
        "duration": 1.0,
        "start": 0.0,
        "is_final": is_final,
        "speech_final": speech_final,
        "from_finalize": False,
        "channel": {"alternatives": [{"transcript": text, "confidence": confidence, "words": []}]},
        "metadata": {
            "request_id": "fake",
            "model_info": {"name": "general", "version": "1", "arch": "nova-3"},
            "model_uuid": "fake",
        },
    }


def deepgram_speech_started() -> dict[str, Any]:
    return {"type": "SpeechStarted", "channel": [0], "timestamp": 0.2}


def deepgram_utterance_end() -> dict[str, Any]:
    return {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": 1.4}


def flux_turn(event: str, transcript: str, turn_index: int = 0) -> dict[str, Any]:
    return {
        "type": "TurnInfo",
        "request_id": "fake",
        "sequence_id": 1,
        "event": event,
        "turn_index": turn_index,
        "audio_window_start": 0.0,
        "audio_window_end": 1.0,
        "transcript": transcript,
        "words": [],
        "end_of_turn_confidence": 0.9 if event == "EndOfTurn" else 0.1,
    }


# ---------------------------------------------------------------------------- AssemblyAI

ASSEMBLYAI_MIN_CHUNK = 400  # 50 ms of 8 kHz mu-law
ASSEMBLYAI_MAX_CHUNK = 8000  # 1000 ms


class FakeAssemblyAI(FakeSttServer):
    paths = ("/v3/ws",)

    def check(self, session: Session) -> None:
        expected = {"sample_rate": "8000", "encoding": "pcm_mulaw"}
        for name, value in expected.items():
            if session.param(name) != value:
                self.problem(f"{name}={session.param(name)!r}, expected {value!r}")
        if not session.param("speech_model"):
            self.problem("missing speech_model")
        if (session.param("format_turns") or "").lower() != "true":
            self.problem("format_turns not enabled")
        keyterms = session.param("keyterms_prompt")
        if keyterms is not None and not isinstance(_json_or_none(keyterms), list):
            self.problem("keyterms_prompt is not a JSON list")

    async def opened(self, ws: ServerConnection, session: Session) -> bool:
        if session.headers.get("Authorization") != self.api_key:
            error = "Unauthorized Connection: Invalid API key"
            await send(ws, {"type": "Error", "error_code": 1008, "error": error})
            await ws.close(1008, error)
            return False
        await send(ws, {"type": "Begin", "id": str(uuid.uuid4()), "expires_at": 1893456000})
        return True

    async def audio_received(self, ws: ServerConnection, session: Session, chunk: bytes) -> None:
        if not ASSEMBLYAI_MIN_CHUNK <= len(chunk) <= ASSEMBLYAI_MAX_CHUNK:
            reason = f"Input duration violation: {len(chunk) // 8} ms"
            self.problem(reason)
            await send(ws, {"type": "Error", "error_code": 3007, "error": reason})
            await ws.close(3007, reason)

    async def control(self, ws: ServerConnection, session: Session, message: str) -> None:
        parsed = _parse(message)
        kind = parsed.get("type") if parsed else None
        session.controls.append(parsed)
        session.log.append(str(kind))
        if kind == "Terminate":
            seconds = len(session.audio) // 8000
            termination = {
                "type": "Termination",
                "audio_duration_seconds": seconds,
                "session_duration_seconds": seconds,
            }
            await self.finish(ws, [termination])
        elif kind not in ("KeepAlive", "ForceEndpoint", "UpdateConfiguration"):
            reason = f"Invalid Message Type: {message}"
            self.problem(reason)
            await send(ws, {"type": "Error", "error_code": 3006, "error": reason})
            await ws.close(3006, "Invalid Message Type")


def assemblyai_turn(
    transcript: str, *, turn_order: int = 0, end_of_turn: bool = False, formatted: bool = False
) -> dict[str, Any]:
    words = [
        {
            "start": 100 * i,
            "end": 100 * i + 80,
            "confidence": 0.9,
            "text": word,
            "word_is_final": True,
        }
        for i, word in enumerate(transcript.split())
    ]
    return {
        "type": "Turn",
        "turn_order": turn_order,
        "turn_is_formatted": formatted,
        "end_of_turn": end_of_turn,
        "transcript": transcript,
        "end_of_turn_confidence": 0.8 if end_of_turn else 0.05,
        "words": words,
        "utterance": transcript if end_of_turn else "",
    }


def assemblyai_speech_started() -> dict[str, Any]:
    return {"type": "SpeechStarted", "timestamp": 240}


# ---------------------------------------------------------------------------- Cartesia


class FakeCartesia(FakeSttServer):
    paths = ("/stt/websocket",)

    def refuse(self, path: str, headers: Headers, query: dict[str, list[str]]) -> int | None:
        return None if headers.get("Authorization") == f"Bearer {self.api_key}" else 401

    def check(self, session: Session) -> None:
        for name in ("model", "language", "encoding", "sample_rate"):
            if not session.param(name):
                self.problem(f"missing {name}")
        if session.param("encoding") not in ("pcm_mulaw", "pcm_s16le"):
            self.problem(f"unsupported encoding {session.param('encoding')!r}")
        if not session.headers.get("cartesia-version"):
            self.problem("missing cartesia-version header")

    async def control(self, ws: ServerConnection, session: Session, message: str) -> None:
        session.controls.append(message)
        session.log.append(message)
        request_id = "fake-request"
        if message == "close":
            await self.finish(ws, [{"type": "done", "request_id": request_id}])
        elif message == "finalize":
            await send(ws, {"type": "flush_done", "request_id": request_id})
        else:
            self.problem(f"unexpected command {message!r}")
            await send(
                ws,
                {
                    "type": "error",
                    "status_code": 400,
                    "title": "Invalid message",
                    "message": "Expected audio, finalize or close.",
                    "request_id": request_id,
                },
            )


def cartesia_transcript(text: str, *, is_final: bool) -> dict[str, Any]:
    return {
        "type": "transcript",
        "request_id": "fake-request",
        "text": text,
        "is_final": is_final,
        "duration": 0.5,
        "language": "en",
        "words": [],
    }


# ---------------------------------------------------------------------------- ElevenLabs


class FakeElevenLabs(FakeSttServer):
    paths = ("/v1/speech-to-text/realtime",)

    def check(self, session: Session) -> None:
        for name in ("model_id", "audio_format", "commit_strategy"):
            if not session.param(name):
                self.problem(f"missing {name}")

    async def opened(self, ws: ServerConnection, session: Session) -> bool:
        if session.headers.get("xi-api-key") != self.api_key:
            error = "You must be authenticated to use this endpoint."
            await send(ws, {"message_type": "auth_error", "error": error})
            await ws.close(1008, "auth_error")
            return False
        config = {
            "sample_rate": 8000,
            "audio_format": session.param("audio_format"),
            "language_code": session.param("language_code"),
            "model_id": session.param("model_id"),
            "commit_strategy": session.param("commit_strategy"),
            "vad_silence_threshold_secs": float(session.param("vad_silence_threshold_secs") or 1.5),
            "keyterms": session.query.get("keyterms", []),
        }
        session_id = uuid.uuid4().hex
        await send(
            ws, {"message_type": "session_started", "session_id": session_id, "config": config}
        )
        return True

    def audio_of(self, session: Session, message: str | bytes) -> bytes | None:
        if isinstance(message, bytes):
            return None
        parsed = _parse(message)
        if not parsed or parsed.get("message_type") != "input_audio_chunk":
            return None
        if parsed.get("sample_rate") != 8000:
            self.problem(f"input_audio_chunk sample_rate={parsed.get('sample_rate')!r}")
        if parsed.get("commit") is not False:
            self.problem("input_audio_chunk commits under the VAD strategy")
        try:
            return base64.b64decode(parsed.get("audio_base_64") or "", validate=True)
        except ValueError:
            self.problem("audio_base_64 is not base64")
            return b""

    async def control(self, ws: ServerConnection, session: Session, message: str) -> None:
        parsed = _parse(message)
        session.controls.append(parsed)
        session.log.append(str(parsed.get("message_type") if parsed else message))
        self.problem(f"unexpected message {message!r}")
        await send(ws, {"message_type": "input_error", "error": "Unknown message type."})


def elevenlabs_partial(text: str) -> dict[str, Any]:
    return {"message_type": "partial_transcript", "text": text}


def elevenlabs_committed(text: str) -> dict[str, Any]:
    return {"message_type": "committed_transcript", "text": text}
