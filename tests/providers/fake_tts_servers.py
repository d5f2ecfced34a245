"""Local stand-ins for the voice providers' streaming APIs, speaking their documented wire
protocols, for the TTS adapter tests (each is a FastAPI app; serve it with
`tests.asgi_server.served`).

Every fake checks the credentials and the request fields the provider checks, records what it
received, streams back a recognisable audio pattern in several chunks and can be told to fail.
With `hold=True` it sends the first chunk and then one more chunk each time the test calls
`gate.allow()`, so a test can see audio arrive before the provider has finished. `sent` counts
the chunks sent, `finished` is set after the last one, `cancelled` when the client cancelled or
went away before the end. Protocol violations the fake notices go to `violations`.

Cartesia: TTS websocket (https://docs.cartesia.ai/api-reference/tts/websocket, the SDK's
`cartesia/lib/_tts.py` and `types/websocket_response.py`)
- `GET /tts/websocket` upgraded; headers `Authorization: Bearer <key>` and `Cartesia-Version`
  (the SDK sends 2026-08-14). A bad key is refused at the handshake with HTTP 401.
- client → server, JSON text: generation request `{context_id, model_id, transcript,
  voice: {mode: "id", id}, output_format: {container: "raw", encoding, sample_rate}, language,
  continue, generation_config: {speed, volume, emotion}}`; cancel `{context_id, cancel: true}`.
- server → client, JSON text: `{type: "chunk", context_id, data: <base64 audio>, done: false,
  status_code: 206, step_time}` …, then `{type: "done", context_id, done: true, status_code}`;
  errors `{type: "error", context_id, done: true, status_code, title, message, error_code}`.

ElevenLabs: stream speech (https://elevenlabs.io/docs/api-reference/text-to-speech/stream)
- `POST /v1/text-to-speech/{voice_id}/stream?output_format=ulaw_8000`, header `xi-api-key`,
  JSON `{text, model_id, voice_settings: {speed, …}, language_code}`; the body is the audio,
  chunked. Errors: JSON `{"detail": {"status", "message"}}` with 401 / 422 / 429 / 500.

OpenAI: create speech (https://developers.openai.com/api/reference/resources/audio/
subresources/speech/methods/create)
- `POST /v1/audio/speech`, `Authorization: Bearer <key>`, JSON `{model, input, voice,
  response_format: "pcm", speed, instructions}`; body: raw 24 kHz 16-bit LE mono PCM, chunked.
  Errors: JSON `{"error": {"message", "type", "code"}}`.

DashScope CosyVoice: inference websocket
(https://www.alibabacloud.com/help/en/model-studio/cosyvoice-websocket-api, client and server
events pages, the SDK's `dashscope/audio/tts_v2/speech_synthesizer.py`)
- `GET /api-ws/v1/inference` upgraded, `Authorization: Bearer <key>`.
- client → server, JSON text, `header: {action, task_id, streaming: "duplex"}`:
  `run-task` (payload `{task_group: "audio", task: "tts", function: "SpeechSynthesizer", model,
  parameters: {text_type: "PlainText", voice, format, sample_rate, volume, rate, pitch, …},
  input: {}}`), `continue-task` (payload `input.text`), `finish-task` (payload `input: {}`, or
  `input.directive: "cancel"` to stop early).
- server → client: JSON `header: {task_id, event, attributes}`: `task-started`,
  `result-generated` (payload.output.type sentence-begin / sentence-synthesis / sentence-end;
  each sentence-synthesis is followed by one binary frame of audio), `task-finished`,
  `task-failed` (`header.error_code`, `header.error_message`; a bad key answers the run-task
  with `InvalidApiKey`).

DashScope Qwen-TTS: HTTP with server-sent events
(https://www.alibabacloud.com/help/en/model-studio/qwen-tts-api, the SDK's
`dashscope/api_entities/http_request.py` and `common/utils.py`)
- `POST /api/v1/services/aigc/multimodal-generation/generation`, `Authorization: Bearer <key>`,
  `X-DashScope-SSE: enable`, JSON `{model, input: {text, voice, language_type}, parameters}`.
- events `id:<n>` / `event:result` / `:HTTP_STATUS/200` / `data:{"output": {"audio": {"data":
  <base64 24 kHz 16-bit PCM>, …}, "finish_reason": "null" | "stop"}, "request_id"}`.
  Errors: JSON `{"code", "message", "request_id"}` with the HTTP status.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response, StreamingResponse

API_KEY = "test-key"
WAIT = 5.0  # the longest a fake waits for the test before giving up

FAILURES = (None, "server_error", "rate_limit", "drop")


class Gate:
    """Lets the test release a fake's chunks one by one, across threads and event loops."""

    def __init__(self) -> None:
        self._permits = threading.Semaphore(0)

    def allow(self, count: int = 1) -> None:
        for _ in range(count):
            self._permits.release()

    async def wait(self) -> bool:
        deadline = time.monotonic() + WAIT
        while not self._permits.acquire(blocking=False):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.002)
        return True


class Fake:
    """What every fake shares: credentials, the scripted answer, and what it saw."""

    url = ""  # where it is served (set by the test)

    def __init__(self, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.app = FastAPI()
        self.routes()
        self.reset()

    def routes(self) -> None:
        """Adds the provider's endpoints to `self.app`."""

    def reset(
        self, chunks: list[bytes] | None = None, *, hold: bool = False, fail: str | None = None
    ) -> None:
        assert fail in FAILURES
        self.chunks = chunks if chunks is not None else [bytes([0x10 + i]) * 160 for i in range(3)]
        self.hold = hold
        self.fail = fail
        self.gate = Gate()
        self.requests: list[dict[str, Any]] = []
        self.violations: list[str] = []
        self.sent = 0
        self.dropped = False
        self.finished = threading.Event()
        self.cancelled = threading.Event()

    async def pace(self, index: int) -> bool:
        """Whether chunk `index` may go now (hold mode: only once the test allowed it)."""
        if index == 0 or not self.hold:
            return True
        if await self.gate.wait():
            return True
        self.violations.append(f"chunk {index} never released")
        return False

    def violation(self, message: str) -> None:
        self.violations.append(message)


def _require(fake: Fake, condition: bool, message: str) -> bool:
    if not condition:
        fake.violation(message)
    return condition


# --------------------------------------------------------------------------- Cartesia


class FakeCartesia(Fake):
    """`/tts/websocket`: one context per generation request, many contexts per connection."""

    def reset(self, *args: Any, **kwargs: Any) -> None:
        super().reset(*args, **kwargs)
        self.handshakes: list[dict[str, str | None]] = []
        self.messages: list[dict[str, Any]] = []
        self.cancelled_contexts: list[str] = []
        self.connections = 0
        self.disconnected = threading.Event()

    def routes(self) -> None:
        self.app.add_api_websocket_route("/tts/websocket", self._websocket)

    def _valid_request(self, message: dict[str, Any]) -> str | None:
        """Why Cartesia would refuse this generation request (None: it would not)."""
        for key in ("context_id", "model_id", "transcript", "voice", "output_format"):
            if key not in message:
                return f"missing {key}"
        voice = message["voice"]
        if not (isinstance(voice, str) or (isinstance(voice, dict) and voice.get("id"))):
            return "voice needs an id"
        output = message["output_format"]
        if output.get("container") != "raw" or not output.get("encoding"):
            return "output_format needs container raw and an encoding"
        if output.get("sample_rate") not in (8000, 16000, 22050, 24000, 44100, 48000):
            return "unsupported sample_rate"
        return None

    async def _websocket(self, ws: WebSocket) -> None:
        authorization = ws.headers.get("authorization")
        version = ws.headers.get("cartesia-version")
        self.handshakes.append({"authorization": authorization, "cartesia_version": version})
        if authorization != f"Bearer {self.api_key}" or not version:
            await ws.send_denial_response(
                JSONResponse({"error": "Invalid API key or missing version"}, status_code=401)
            )
            return
        await ws.accept()
        self.connections += 1
        lock = asyncio.Lock()
        streams: dict[str, asyncio.Task[None]] = {}

        async def send(message: dict[str, Any]) -> None:
            async with lock:
                await ws.send_text(json.dumps(message))

        async def stream(context_id: str) -> None:
            for index, chunk in enumerate(self.chunks):
                if not await self.pace(index):
                    return
                if self.fail == "drop" and index == 1:
                    self.dropped = True
                    await ws.close(code=1011)
                    return
                self.sent += 1
                await send(
                    {
                        "type": "chunk",
                        "context_id": context_id,
                        "data": base64.b64encode(chunk).decode(),
                        "done": False,
                        "status_code": 206,
                        "step_time": 12.5,
                    }
                )
                if self.fail in ("server_error", "rate_limit"):
                    status = 500 if self.fail == "server_error" else 429
                    await send(
                        {
                            "type": "error",
                            "context_id": context_id,
                            "done": True,
                            "status_code": status,
                            "title": "Generation failed",
                            "message": "scripted failure",
                            "error_code": self.fail,
                        }
                    )
                    return
            await send({"type": "done", "context_id": context_id, "done": True, "status_code": 206})
            self.finished.set()

        try:
            while True:
                message = json.loads(await ws.receive_text())
                self.messages.append(message)
                context_id = message.get("context_id", "")
                if message.get("cancel") is True:
                    self.cancelled_contexts.append(context_id)
                    task = streams.pop(context_id, None)
                    if task is not None and not task.done():
                        task.cancel()
                        self.cancelled.set()
                    continue
                problem = self._valid_request(message)
                if problem is not None or context_id in streams:
                    self.violation(problem or f"context {context_id} reused")
                    await send(
                        {
                            "type": "error",
                            "context_id": context_id,
                            "done": True,
                            "status_code": 400,
                            "title": "Invalid request",
                            "message": problem or "context in use",
                        }
                    )
                    continue
                self.requests.append(message)
                streams[context_id] = asyncio.create_task(stream(context_id))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            for task in streams.values():
                if not task.done():
                    task.cancel()
            self.disconnected.set()


# --------------------------------------------------------------------------- HTTP streaming


class _HttpStreaming(Fake):
    """Shared body streaming of the chunked-HTTP fakes."""

    def body(self, frame: Any = None) -> Any:
        async def generate() -> Any:
            completed = dropped = False
            try:
                for index, chunk in enumerate(self.chunks):
                    if not await self.pace(index):
                        return
                    if self.fail == "drop" and index == 1:
                        dropped = self.dropped = True
                        raise ConnectionResetError("scripted drop mid-stream")
                    self.sent += 1
                    yield frame(index, chunk) if frame else chunk
                if frame:
                    yield frame(len(self.chunks), None)
                completed = True
                self.finished.set()
            finally:
                if not completed and not dropped:
                    self.cancelled.set()

        return generate()


class FakeElevenLabs(_HttpStreaming):
    """`POST /v1/text-to-speech/{voice_id}/stream`."""

    def routes(self) -> None:
        path = "/v1/text-to-speech/{voice_id}/stream"
        self.app.add_api_route(path, self._stream, methods=["POST"])

    async def _stream(self, voice_id: str, request: Request) -> Response:
        body = json.loads(await request.body())
        self.requests.append(
            {
                "voice_id": voice_id,
                "query": dict(request.query_params),
                "api_key": request.headers.get("xi-api-key"),
                "body": body,
            }
        )
        if request.headers.get("xi-api-key") != self.api_key:
            detail = {"status": "invalid_api_key", "message": "Invalid API key"}
            return JSONResponse({"detail": detail}, status_code=401)
        if not _require(self, bool(body.get("text")), "text missing"):
            return JSONResponse({"detail": {"status": "invalid", "message": "text"}}, 422)
        if self.fail in ("server_error", "rate_limit"):
            status = 500 if self.fail == "server_error" else 429
            return JSONResponse({"detail": {"status": self.fail, "message": "scripted"}}, status)
        media = "audio/basic" if request.query_params.get("output_format") == "ulaw_8000" else None
        return StreamingResponse(self.body(), media_type=media or "audio/mpeg")


class FakeOpenAI(_HttpStreaming):
    """`POST /v1/audio/speech`."""

    def routes(self) -> None:
        self.app.add_api_route("/v1/audio/speech", self._speech, methods=["POST"])

    async def _speech(self, request: Request) -> Response:
        body = json.loads(await request.body())
        authorization = request.headers.get("authorization")
        self.requests.append({"authorization": authorization, "body": body})
        if authorization != f"Bearer {self.api_key}":
            error = {
                "message": "Incorrect API key provided",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
            return JSONResponse({"error": error}, status_code=401)
        for key in ("model", "input", "voice"):
            if not _require(self, key in body, f"{key} missing"):
                error = {"message": f"Missing {key}", "type": "invalid_request_error"}
                return JSONResponse({"error": error}, status_code=400)
        if self.fail in ("server_error", "rate_limit"):
            status = 500 if self.fail == "server_error" else 429
            return JSONResponse({"error": {"message": "scripted", "type": self.fail}}, status)
        return StreamingResponse(self.body(), media_type="application/octet-stream")


# --------------------------------------------------------------------------- DashScope


class FakeDashScope(_HttpStreaming):
    """CosyVoice over `/api-ws/v1/inference` and Qwen-TTS over SSE, one host."""

    def reset(self, *args: Any, **kwargs: Any) -> None:
        super().reset(*args, **kwargs)
        self.handshakes: list[dict[str, str | None]] = []
        self.messages: list[dict[str, Any]] = []
        self.texts: list[str] = []
        self.connections = 0
        self.disconnected = threading.Event()

    def routes(self) -> None:
        self.app.add_api_websocket_route("/api-ws/v1/inference", self._websocket)
        self.app.add_api_route(
            "/api/v1/services/aigc/multimodal-generation/generation",
            self._generation,
            methods=["POST"],
        )

    # ------------------------------------------------------------------ CosyVoice websocket
    def _check_run_task(self, message: dict[str, Any]) -> str | None:
        header, payload = message.get("header", {}), message.get("payload", {})
        if header.get("streaming") != "duplex" or not header.get("task_id"):
            return "run-task header needs task_id and streaming duplex"
        expected = {"task_group": "audio", "task": "tts", "function": "SpeechSynthesizer"}
        for key, value in expected.items():
            if payload.get(key) != value:
                return f"run-task payload.{key} must be {value}"
        if not payload.get("model") or payload.get("input") != {}:
            return "run-task needs a model and an empty input"
        parameters = payload.get("parameters", {})
        for key in ("voice", "format", "sample_rate", "text_type"):
            if key not in parameters:
                return f"run-task parameters.{key} missing"
        return None

    async def _websocket(self, ws: WebSocket) -> None:
        authorization = ws.headers.get("authorization")
        self.handshakes.append({"authorization": authorization})
        await ws.accept()
        self.connections += 1
        lock = asyncio.Lock()
        task_id: str | None = None
        finish = asyncio.Event()
        streams: list[asyncio.Task[None]] = []

        async def send(event: str, payload: dict[str, Any] | None = None, **extra: Any) -> None:
            header = {"task_id": task_id, "event": event, "attributes": {}, **extra}
            async with lock:
                await ws.send_text(json.dumps({"header": header, "payload": payload or {}}))

        async def send_output(kind: str, **fields: Any) -> None:
            output = {"type": kind, "sentence": {"index": 0, "words": []}, **fields}
            await send("result-generated", {"output": output})

        async def stream(text: str, previous: asyncio.Task[None] | None) -> None:
            if previous is not None:
                await previous
            await send_output("sentence-begin", original_text=text)
            for index, chunk in enumerate(self.chunks):
                if not await self.pace(index):
                    return
                if self.fail == "drop" and index == 1:
                    self.dropped = True
                    await ws.close(code=1011)
                    return
                self.sent += 1
                await send_output("sentence-synthesis")
                async with lock:
                    await ws.send_bytes(chunk)
                if self.fail in ("server_error", "rate_limit"):
                    code = {"server_error": "InternalError", "rate_limit": "Throttling.RateQuota"}
                    await send(
                        "task-failed", error_code=code[self.fail], error_message="scripted failure"
                    )
                    return
            await send_output("sentence-end", original_text=text)
            await finish.wait()
            await send("task-finished", {"output": {}, "usage": {"characters": len(text)}})
            self.finished.set()

        try:
            while True:
                message = json.loads(await ws.receive_text())
                self.messages.append(message)
                header, payload = message.get("header", {}), message.get("payload", {})
                action = header.get("action")
                if action == "run-task":
                    problem = self._check_run_task(message)
                    task_id = header.get("task_id")
                    self.requests.append(message)
                    if authorization != f"Bearer {self.api_key}":
                        await send(
                            "task-failed",
                            error_code="InvalidApiKey",
                            error_message="Invalid API-key provided.",
                        )
                    elif problem is not None:
                        self.violation(problem)
                        await send(
                            "task-failed", error_code="InvalidParameter", error_message=problem
                        )
                    else:
                        await send("task-started")
                    continue
                if header.get("task_id") != task_id or task_id is None:
                    self.violation(f"{action} for an unknown task")
                    continue
                if action == "continue-task":
                    text = payload.get("input", {}).get("text", "")
                    _require(self, bool(text), "continue-task without text")
                    self.texts.append(text)
                    previous = streams[-1] if streams else None
                    streams.append(asyncio.create_task(stream(text, previous)))
                elif action == "finish-task":
                    if payload.get("input", {}).get("directive") == "cancel":
                        for task in streams:
                            task.cancel()
                        if not self.finished.is_set():
                            self.cancelled.set()
                        await send("task-finished", {"output": {}})
                    finish.set()
                else:
                    self.violation(f"unknown action {action}")
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            if streams and not self.finished.is_set() and not self.dropped:
                self.cancelled.set()
            for task in streams:
                task.cancel()
            self.disconnected.set()

    # ------------------------------------------------------------------ Qwen-TTS over SSE
    async def _generation(self, request: Request) -> Response:
        body = json.loads(await request.body())
        authorization = request.headers.get("authorization")
        self.requests.append(
            {
                "authorization": authorization,
                "sse": request.headers.get("x-dashscope-sse"),
                "body": body,
            }
        )
        request_id = uuid.uuid4().hex
        if authorization != f"Bearer {self.api_key}":
            error = {"code": "InvalidApiKey", "message": "Invalid API-key provided."}
            return JSONResponse({**error, "request_id": request_id}, status_code=401)
        text = body.get("input", {}).get("text")
        if not (_require(self, bool(text), "input.text missing") and body.get("model")):
            error = {"code": "InvalidParameter", "message": "input.text and model required"}
            return JSONResponse({**error, "request_id": request_id}, status_code=400)
        _require(self, request.headers.get("x-dashscope-sse") == "enable", "SSE not enabled")
        if self.fail in ("server_error", "rate_limit"):
            status = 500 if self.fail == "server_error" else 429
            code = "InternalError" if self.fail == "server_error" else "Throttling.RateQuota"
            error = {"code": code, "message": "scripted failure", "request_id": request_id}
            return JSONResponse(error, status_code=status)

        def frame(index: int, chunk: bytes | None) -> bytes:
            audio = {"data": base64.b64encode(chunk or b"").decode(), "id": request_id}
            done = chunk is None
            if done:
                audio["url"] = "https://example.invalid/audio.wav"
            output = {"audio": audio, "finish_reason": "stop" if done else "null"}
            data = json.dumps({"output": output, "request_id": request_id})
            return f"id:{index + 1}\nevent:result\n:HTTP_STATUS/200\ndata:{data}\n\n".encode()

        return StreamingResponse(self.body(frame), media_type="text/event-stream")
