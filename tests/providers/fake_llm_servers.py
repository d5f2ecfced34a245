"""Local stand-ins for the language-model APIs, speaking their documented streaming protocols
over real HTTP on 127.0.0.1 so the official SDKs can be pointed at them by base URL.

Each fake is scripted per test: `reply(*steps)` queues the answer to the next request (SSE
events, `Pause` until the test says go, `Cut` the connection mid-stream) and `fail(status)`
queues an error response with the provider's documented error body. Every request is recorded
(path, query, lower-cased headers, JSON body) and checked the way the provider would check it;
a request the provider would refuse gets the provider's 4xx answer and its reason in `problems`.

Protocol details the fakes rest on
----------------------------------
OpenAI Chat Completions (https://platform.openai.com/docs/api-reference/chat/create,
https://platform.openai.com/docs/api-reference/chat-streaming), also served by DeepSeek
(https://api-docs.deepseek.com/api/create-chat-completion), Qwen's compatible mode
(https://www.alibabacloud.com/help/en/model-studio/compatibility-of-openai-with-dashscope) and
Kimi (https://platform.kimi.ai/docs/api/quickstart):
- `POST {base}/chat/completions` (`/v1/chat/completions` at the API root), header
  `Authorization: Bearer <key>`; a wrong key is 401 with
  `{"error": {"message", "type": "invalid_request_error", "param": null,
  "code": "invalid_api_key"}}`; 429 `rate_limit_exceeded`, 500 `server_error` alike.
- body: `model`, `messages` (system/user/assistant/tool; an assistant message's `tool_calls`
  `[{id, type: "function", function: {name, arguments: <JSON string>}}]`; a `tool` message's
  `tool_call_id` must answer a call of the assistant message before it), `stream: true`,
  `stream_options: {"include_usage": true}`, `tools: [{type: "function", function: {name,
  description, parameters}}]`, `temperature`, `max_tokens` / `max_completion_tokens`.
- answer: `text/event-stream` of `data: <chat.completion.chunk JSON>` lines:
  `choices[0].delta.content` pieces; `choices[0].delta.tool_calls[{index, id, type, function:
  {name, arguments}}]` where only the first delta of a call has id/name and `arguments` arrive
  in pieces; `choices[0].finish_reason` (stop, length, tool_calls); with include_usage a last
  chunk with `choices: []` and `usage: {prompt_tokens, completion_tokens, total_tokens}` (the
  others carry `usage: null`); then `data: [DONE]`.

Anthropic Messages (https://platform.claude.com/docs/en/api/messages,
https://platform.claude.com/docs/en/build-with-claude/streaming,
https://platform.claude.com/docs/en/api/errors,
https://platform.claude.com/docs/en/api/versioning,
https://platform.claude.com/docs/en/api/migration-2026-10-21):
- `POST /v1/messages`, headers `anthropic-version` (2023-06-01 or 2026-10-21, the SDK 2.x
  default) and the key as `x-api-key` or, as SDK 2.x sends it, `Authorization: Bearer`.
  Errors: `{"type": "error", "error": {"type", "message"}, "request_id"}` with
  authentication_error (401), invalid_request_error (400), rate_limit_error (429),
  api_error (500), overloaded_error (529).
- body: `model`, `max_tokens` (required), `system`, `messages` alternating user/assistant and
  starting with user, content blocks `text`, `tool_use {id, name, input}`,
  `tool_result {tool_use_id, content}` (in the user message right after the tool_use, before
  any text); `tools: [{name, description, input_schema}]`; `stream: true`. Under 2026-10-21
  `temperature`, `top_p` and `top_k` are refused (400, "Extra inputs are not permitted").
- answer: SSE with `event:` names: message_start {message: {id, role, content: [], usage:
  {input_tokens, output_tokens}}}, per block content_block_start {index, content_block: text |
  tool_use {id, name, input: {}}}, content_block_delta {index, delta: text_delta {text} |
  input_json_delta {partial_json}}, content_block_stop {index}; message_delta {delta:
  {stop_reason, stop_sequence}, usage: {output_tokens}}; message_stop; `ping` anywhere; an
  `error` event {type: "error", error: {type, message}} may replace the rest.

Gemini generateContent (https://ai.google.dev/api/generate-content,
https://ai.google.dev/gemini-api/docs/function-calling,
https://ai.google.dev/gemini-api/docs/thought-signatures,
https://ai.google.dev/gemini-api/docs/api-versions, https://ai.google.dev/gemini-api/docs/troubleshooting):
- `POST /{v1|v1beta}/models/{model}:streamGenerateContent?alt=sse`, key in `x-goog-api-key`
  (or `?key=`). A wrong key is 400 INVALID_ARGUMENT (reason API_KEY_INVALID), a missing one
  403 PERMISSION_DENIED; errors are `{"error": {"code", "message", "status", "details"}}`
  (429 RESOURCE_EXHAUSTED, 500 INTERNAL, 503 UNAVAILABLE).
- body (camelCase): `contents: [{role: user|model, parts: [{text} | {functionCall: {id?, name,
  args}, thoughtSignature?} | {functionResponse: {id?, name, response}}]}]`,
  `systemInstruction: {parts: [{text}]}`, `generationConfig: {temperature,
  maxOutputTokens}`, `tools: [{functionDeclarations: [{name, description,
  parametersJsonSchema | parameters}]}]` (proto-JSON: snake_case field names are accepted too,
  and the SDK sends `parameters_json_schema`). A turn answering function calls must hold as many
  functionResponse parts as the model turn before it had functionCall parts.
- answer: SSE `data: <GenerateContentResponse JSON>` events: `candidates[0].content.parts`
  (text pieces, whole functionCall parts), `finishReason` (STOP, MAX_TOKENS, ...) and
  `usageMetadata {promptTokenCount, candidatesTokenCount, totalTokenCount}` on the last.

Structured answers (post-call analysis) are the same endpoints without streaming, scripted with
`reply_whole(body)`:
- OpenAI: no `stream`, no `stream_options` (refused without streaming); `response_format`
  `{type: "json_schema", json_schema: {name (a-z, A-Z, 0-9, _ or -, at most 64), schema,
  strict}}` where strict mode wants every object's keys all `required` and
  `additionalProperties: false`; or `{type: "json_object"}`, which is refused unless a message
  contains the word "json". Answer: a `chat.completion` object, `choices[0].message.content`.
- Anthropic: no `stream`; a tool with `strict: true` needs `additionalProperties: false` on every
  object and none of the unsupported keywords (minimum, maximum, minLength, maxLength …);
  `tool_choice: {type: "tool", name}` must name a tool. Answer: a `message` object whose
  `content` holds the `tool_use` block, `stop_reason: "tool_use"`.
- Gemini: `POST /{version}/models/{model}:generateContent` (no `alt=sse`); `generationConfig`
  `responseMimeType: "application/json"` with `responseJsonSchema` (or `responseSchema`, not
  both). Answer: one GenerateContentResponse.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tests.asgi_server import served

PAUSE_LIMIT_S = 5.0


# --------------------------------------------------------------------------- script steps


@dataclass(frozen=True)
class Event:
    """One server-sent event: `data` (a JSON value, or raw text) and an optional event name."""

    data: Any
    name: str | None = None


@dataclass(frozen=True)
class Pause:
    """Send nothing until the test sets `until` (the client may hang up meanwhile)."""

    until: threading.Event


@dataclass(frozen=True)
class Cut:
    """Drop the connection without ending the HTTP body (a stream broken mid-way)."""


@dataclass(frozen=True)
class Failure:
    status: int
    body: Any


Step = Event | Pause | Cut


@dataclass(frozen=True)
class Whole:
    """A whole JSON answer (a non-streamed request)."""

    body: Any


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class _StreamCut(Exception):
    """Raised inside a streaming body: uvicorn then closes the connection mid-body."""


# --------------------------------------------------------------------------- base fake


@dataclass
class FakeLlmServer:
    """The scripted, recording part every provider fake shares."""

    api_key: str = "test-key"
    received: list[Received] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # The client hung up while the fake was still streaming.
    disconnected: threading.Event = field(default_factory=threading.Event)
    # The fake streamed its whole script (not cut, not hung up on).
    completed: threading.Event = field(default_factory=threading.Event)
    pause_timeouts: int = 0
    _replies: deque[Failure | Whole | tuple[Step, ...]] = field(default_factory=deque)

    # -- scripting
    def reply(self, *steps: Step) -> None:
        self._replies.append(tuple(steps))

    def reply_whole(self, body: Any) -> None:
        self._replies.append(Whole(body))

    def fail(self, status: int, body: Any = None) -> None:
        self._replies.append(Failure(status, self.error_body(status) if body is None else body))

    @property
    def last(self) -> Received:
        assert self.received, "the fake received no request"
        return self.received[-1]

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        with served(self.app()) as url:
            yield url

    # -- what each provider defines
    def app(self) -> FastAPI:
        raise NotImplementedError

    def error_body(self, status: int, message: str | None = None) -> Any:
        raise NotImplementedError

    def encode(self, event: Event) -> bytes:
        raise NotImplementedError

    def trailer(self) -> list[bytes]:
        return []

    # -- shared handling
    async def record(self, request: Request) -> Received:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        received = Received(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        self.received.append(received)
        return received

    def refuse(self, status: int, reason: str) -> Response:
        self.problems.append(reason)
        return JSONResponse(self.error_body(status, reason), status_code=status)

    def answer(self) -> Response:
        if not self._replies:
            return self.refuse(500, "the test scripted no reply for this request")
        scripted = self._replies.popleft()
        if isinstance(scripted, Failure):
            return JSONResponse(scripted.body, status_code=scripted.status)
        if isinstance(scripted, Whole):
            return JSONResponse(scripted.body)
        return StreamingResponse(self._stream(scripted), media_type="text/event-stream")

    async def _stream(self, steps: tuple[Step, ...]) -> AsyncIterator[bytes]:
        try:
            for step in steps:
                if isinstance(step, Pause):
                    if not await self._pause(step.until):
                        self.pause_timeouts += 1
                        raise _StreamCut("paused too long: the client never went on")
                elif isinstance(step, Cut):
                    raise _StreamCut("scripted cut")
                else:
                    yield self.encode(step)
            for tail in self.trailer():
                yield tail
            self.completed.set()
        except (asyncio.CancelledError, GeneratorExit, OSError):
            self.disconnected.set()
            raise

    @staticmethod
    async def _pause(until: threading.Event) -> bool:
        deadline = time.monotonic() + PAUSE_LIMIT_S
        while not until.is_set():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True


class FakeHost:
    """One server for many fakes in turn (starting uvicorn per test is the slow part):
    requests go to the app of the fake installed last; a stream still running for an earlier
    fake keeps reporting to that fake."""

    def __init__(self) -> None:
        self._app: FastAPI | None = None

    def install(self, fake: FakeLlmServer) -> None:
        self._app = fake.app()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self._app is not None, "no fake installed"
        await self._app(scope, receive, send)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


# --------------------------------------------------------------------------- OpenAI


class OpenAIFake(FakeLlmServer):
    """Chat Completions with streaming (OpenAI and the compatible providers)."""

    model: str = "gpt-4o-mini"

    def app(self) -> FastAPI:
        app = FastAPI()

        async def completions(request: Request) -> Response:
            received = await self.record(request)
            auth = received.headers.get("authorization", "")
            if auth != f"Bearer {self.api_key}":
                self.problems.append("bad or missing bearer key")
                return JSONResponse(self.error_body(401), status_code=401)
            reason = self.check(received.body)
            if reason:
                return self.refuse(400, reason)
            return self.answer()

        # At the API root (`/v1/chat/completions`) or under any base path a provider uses
        # (DeepSeek: none, Qwen: /compatible-mode/v1, Kimi: /v1).
        app.add_api_route("/chat/completions", completions, methods=["POST"])
        app.add_api_route("/{base:path}/chat/completions", completions, methods=["POST"])
        return app

    @staticmethod
    def check(body: Any) -> str | None:
        if not isinstance(body, dict):
            return "the body is not a JSON object"
        if not isinstance(body.get("model"), str) or not body["model"]:
            return "you must provide a model parameter"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "messages: must be a non-empty array"
        open_calls: set[str] = set()
        for i, message in enumerate(messages):
            role = message.get("role")
            if role not in ("system", "developer", "user", "assistant", "tool"):
                return f"messages[{i}].role: invalid value {role!r}"
            if role == "assistant":
                open_calls = set()
                for call in message.get("tool_calls") or []:
                    fn = call.get("function") or {}
                    if call.get("type") != "function" or not call.get("id") or not fn.get("name"):
                        return f"messages[{i}].tool_calls: malformed call {call!r}"
                    if not isinstance(fn.get("arguments"), str):
                        return f"messages[{i}].tool_calls: arguments must be a JSON string"
                    open_calls.add(call["id"])
                if message.get("content") is None and not message.get("tool_calls"):
                    return f"messages[{i}]: assistant content required without tool_calls"
            elif role == "tool":
                if message.get("tool_call_id") not in open_calls:
                    return (
                        f"messages[{i}]: messages with role 'tool' must be a response to a "
                        "preceding message with 'tool_calls'"
                    )
                if not isinstance(message.get("content"), str):
                    return f"messages[{i}].content: must be a string"
            else:
                open_calls = set()
                if not isinstance(message.get("content"), str):
                    return f"messages[{i}].content: must be a string"
        for tool in body.get("tools") or []:
            fn = tool.get("function") or {}
            if tool.get("type") != "function" or not fn.get("name"):
                return f"tools: malformed tool {tool!r}"
            if fn.get("parameters") is not None and not isinstance(fn["parameters"], dict):
                return "tools: parameters must be a JSON schema object"
        if body.get("stream") is not True:
            if "stream_options" in body:
                return "stream_options: only allowed when stream is true"
            return OpenAIFake.check_response_format(body)
        return None

    @staticmethod
    def check_response_format(body: dict[str, Any]) -> str | None:
        form = body.get("response_format")
        if form is None:
            return None
        if form.get("type") == "json_object":
            said = " ".join(str(m.get("content") or "") for m in body["messages"]).casefold()
            if "json" not in said:
                return (
                    "'messages' must contain the word 'json' in some form, to use "
                    "'response_format' of type 'json_object'."
                )
            return None
        if form.get("type") != "json_schema":
            return f"response_format.type: invalid value {form.get('type')!r}"
        spec = form.get("json_schema") or {}
        name = spec.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            return "response_format.json_schema.name: must match ^[a-zA-Z0-9_-]{1,64}$"
        if not isinstance(spec.get("schema"), dict):
            return "response_format.json_schema.schema: must be an object"
        if spec.get("strict") is True:
            return strict_problem(spec["schema"], "openai")
        return None

    def error_body(self, status: int, message: str | None = None) -> Any:
        kinds = {
            400: ("invalid_request_error", None, "Invalid request."),
            401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
            429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
            500: ("server_error", None, "The server had an error while processing your request."),
            503: ("server_error", None, "The engine is currently overloaded."),
        }
        kind, code, default = kinds.get(status, ("invalid_request_error", None, "Error."))
        return {"error": {"message": message or default, "type": kind, "param": None, "code": code}}

    def encode(self, event: Event) -> bytes:
        data = event.data if isinstance(event.data, str) else _json(event.data)
        return f"data: {data}\n\n".encode()

    def trailer(self) -> list[bytes]:
        return [b"data: [DONE]\n\n"]

    # -- chunk builders
    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> Event:
        return Event(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": self.model,
                "system_fingerprint": None,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
                ],
                "usage": None,
            }
        )

    def text(self, *pieces: str) -> list[Event]:
        first = [self.chunk({"role": "assistant", "content": ""})]
        return first + [self.chunk({"content": piece}) for piece in pieces]

    def tool_call(self, index: int, call_id: str, name: str, *arg_pieces: str) -> list[Event]:
        head = {
            "index": index,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        events = [self.chunk({"tool_calls": [head]})]
        events += [
            self.chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            for piece in arg_pieces
        ]
        return events

    def finish(self, reason: str = "stop", prompt: int = 12, completion: int = 7) -> list[Event]:
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        last = Event(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": self.model,
                "choices": [],
                "usage": usage,
            }
        )
        return [self.chunk({}, finish_reason=reason), last]

    def error_event(self, message: str = "The server is overloaded.") -> Event:
        return Event({"error": {"message": message, "type": "server_error", "code": None}})

    def completion(
        self, content: str | None, finish_reason: str = "stop", refusal: str | None = None
    ) -> dict[str, Any]:
        """A whole `chat.completion` answer."""
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": refusal},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {"prompt_tokens": 300, "completion_tokens": 80, "total_tokens": 380},
        }


# --------------------------------------------------------------------------- Anthropic


ANTHROPIC_VERSIONS = ("2023-06-01", "2026-10-21")


class AnthropicFake(FakeLlmServer):
    """The Messages API with streaming."""

    model: str = "claude-haiku-4-5"

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/messages")
        async def messages(request: Request) -> Response:
            received = await self.record(request)
            version = received.headers.get("anthropic-version")
            if version not in ANTHROPIC_VERSIONS:
                return self.refuse(400, f"anthropic-version: unknown or missing ({version!r})")
            key = received.headers.get("x-api-key")
            bearer = received.headers.get("authorization", "")
            if key is None and bearer.startswith("Bearer "):
                key = bearer.removeprefix("Bearer ")
            if key != self.api_key:
                self.problems.append("bad or missing API key")
                return JSONResponse(self.error_body(401), status_code=401)
            reason = self.check(received.body, version)
            if reason:
                return self.refuse(400, reason)
            return self.answer()

        return app

    @staticmethod
    def check(body: Any, version: str) -> str | None:
        if not isinstance(body, dict):
            return "the body is not a JSON object"
        if not isinstance(body.get("model"), str):
            return "model: Field required"
        if not isinstance(body.get("max_tokens"), int):
            return "max_tokens: Field required"
        if version == "2026-10-21":
            for name in ("temperature", "top_p", "top_k"):
                if name in body:
                    return f"{name}: Extra inputs are not permitted"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "messages: at least one message is required"
        if messages[0].get("role") != "user":
            return 'messages: first message must use the "user" role'
        previous_tool_uses: set[str] = set()
        for i, message in enumerate(messages):
            role = message.get("role")
            if role not in ("user", "assistant"):
                return f"messages.{i}.role: Input should be 'user' or 'assistant'"
            if i and messages[i - 1].get("role") == role:
                return "messages: roles must alternate between 'user' and 'assistant'"
            content = message.get("content")
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
            if not isinstance(blocks, list) or not blocks:
                return f"messages.{i}: content must be non-empty"
            tool_uses: set[str] = set()
            seen_other = False
            for block in blocks:
                kind = block.get("type")
                if kind == "text":
                    if not block.get("text"):
                        return f"messages.{i}: text content blocks must be non-empty"
                    seen_other = True
                elif kind == "tool_use" and role == "assistant":
                    if not block.get("id") or not block.get("name"):
                        return f"messages.{i}: tool_use needs id and name"
                    if not isinstance(block.get("input"), dict):
                        return f"messages.{i}: tool_use.input must be an object"
                    tool_uses.add(block["id"])
                elif kind == "tool_result" and role == "user":
                    if seen_other:
                        return f"messages.{i}: tool_result blocks must come first"
                    if block.get("tool_use_id") not in previous_tool_uses:
                        return (
                            f"messages.{i}: unexpected `tool_use_id` found in `tool_result` "
                            "blocks; each tool_result must have a tool_use in the previous message"
                        )
                else:
                    return f"messages.{i}: unexpected block {kind!r} for role {role}"
            previous_tool_uses = tool_uses
        system = body.get("system")
        if system is not None and not isinstance(system, str | list):
            return "system: must be a string or text blocks"
        names = set()
        for tool in body.get("tools") or []:
            if not tool.get("name") or not isinstance(tool.get("input_schema"), dict):
                return f"tools: malformed tool {tool!r}"
            names.add(tool["name"])
            if tool.get("strict") is True:
                problem = strict_problem(tool["input_schema"], "anthropic")
                if problem:
                    return f"tools.{tool['name']}.input_schema: {problem}"
        choice = body.get("tool_choice")
        if choice is not None:
            if choice.get("type") not in ("auto", "any", "tool", "none"):
                return "tool_choice.type: invalid"
            if choice.get("type") == "tool" and choice.get("name") not in names:
                return f"tool_choice.name: no tool named {choice.get('name')!r}"
        return None

    def error_body(self, status: int, message: str | None = None) -> Any:
        kinds = {
            400: ("invalid_request_error", "Invalid request."),
            401: ("authentication_error", "invalid x-api-key"),
            403: ("permission_error", "Your API key does not have permission."),
            429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
            500: ("api_error", "Internal server error"),
            529: ("overloaded_error", "Overloaded"),
        }
        kind, default = kinds.get(status, ("api_error", "Error"))
        return {
            "type": "error",
            "error": {"type": kind, "message": message or default},
            "request_id": "req_fake",
        }

    def encode(self, event: Event) -> bytes:
        data = event.data if isinstance(event.data, str) else _json(event.data)
        name = event.name or (event.data.get("type") if isinstance(event.data, dict) else None)
        head = f"event: {name}\n" if name else ""
        return f"{head}data: {data}\n\n".encode()

    # -- event builders
    def start(self, input_tokens: int = 25) -> list[Event]:
        message = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1},
        }
        return [Event({"type": "message_start", "message": message})]

    def text_block(self, index: int, *pieces: str) -> list[Event]:
        events = [
            Event(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                }
            ),
            Event({"type": "ping"}),
        ]
        events += [
            Event(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": piece},
                }
            )
            for piece in pieces
        ]
        return events

    def tool_block(self, index: int, call_id: str, name: str, *json_pieces: str) -> list[Event]:
        events = [
            Event(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "tool_use", "id": call_id, "name": name, "input": {}},
                }
            )
        ]
        events += [
            Event(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": piece},
                }
            )
            for piece in json_pieces
        ]
        return [*events, self.block_stop(index)]

    @staticmethod
    def block_stop(index: int) -> Event:
        return Event({"type": "content_block_stop", "index": index})

    def finish(self, stop_reason: str = "end_turn", output_tokens: int = 15) -> list[Event]:
        return [
            Event(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": output_tokens},
                }
            ),
            Event({"type": "message_stop"}),
        ]

    @staticmethod
    def error_event(kind: str = "overloaded_error", message: str = "Overloaded") -> Event:
        return Event({"type": "error", "error": {"type": kind, "message": message}})

    def tool_message(
        self, name: str, tool_input: Any, stop_reason: str = "tool_use"
    ) -> dict[str, Any]:
        """A whole `message` answer holding one tool_use block."""
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [
                {"type": "tool_use", "id": "toolu_fake", "name": name, "input": tool_input}
            ],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": 320, "output_tokens": 90},
        }


# --------------------------------------------------------------------------- Gemini


class GeminiFake(FakeLlmServer):
    """`models.streamGenerateContent` with `alt=sse`."""

    model: str = "gemini-2.5-flash"

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/{version}/models/{model_action}")
        async def generate(version: str, model_action: str, request: Request) -> Response:
            received = await self.record(request)
            if version not in ("v1", "v1beta"):
                return self.refuse(404, f"unknown API version {version!r}")
            model, _, action = model_action.partition(":")
            if action not in ("streamGenerateContent", "generateContent") or not model:
                return self.refuse(404, f"unknown method {model_action!r}")
            if action == "streamGenerateContent" and received.query.get("alt") != "sse":
                return self.refuse(400, "this fake streams server-sent events only (alt=sse)")
            key = received.headers.get("x-goog-api-key") or received.query.get("key")
            if not key:
                self.problems.append("no API key")
                return JSONResponse(self.error_body(403), status_code=403)
            if key != self.api_key:
                self.problems.append("wrong API key")
                return JSONResponse(self.invalid_key_body(), status_code=400)
            reason = self.check(received.body)
            if reason:
                return self.refuse(400, reason)
            return self.answer()

        return app

    @staticmethod
    def check(body: Any) -> str | None:
        if not isinstance(body, dict):
            return "the body is not a JSON object"
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            return "contents is not specified"
        if contents[0].get("role") != "user":
            return "the first content must come from the user"
        calls_before = 0
        for i, content in enumerate(contents):
            role = content.get("role")
            if role not in ("user", "model"):
                return f"contents[{i}].role: must be user or model"
            parts = content.get("parts")
            if not isinstance(parts, list) or not parts:
                return f"contents[{i}].parts: must not be empty"
            responses = 0
            calls = 0
            for part in parts:
                if "functionResponse" in part:
                    fr = part["functionResponse"]
                    if role != "user" or not fr.get("name"):
                        return f"contents[{i}]: malformed functionResponse"
                    if not isinstance(fr.get("response"), dict):
                        return f"contents[{i}]: functionResponse.response must be an object"
                    responses += 1
                elif "functionCall" in part:
                    fc = part["functionCall"]
                    if role != "model" or not fc.get("name"):
                        return f"contents[{i}]: malformed functionCall"
                    calls += 1
                elif "text" in part:
                    if not isinstance(part["text"], str):
                        return f"contents[{i}]: text must be a string"
                else:
                    return f"contents[{i}]: unexpected part {part!r}"
            if responses and responses != calls_before:
                return (
                    "Please ensure that the number of function response parts is equal to "
                    "the number of function call parts of the function call turn."
                )
            calls_before = calls
        for tool in body.get("tools") or []:
            for decl in tool.get("functionDeclarations") or []:
                if not decl.get("name"):
                    return "functionDeclarations: name is required"
                # Proto-JSON accepts a field's camelCase or original snake_case name.
                as_json_schema = "parametersJsonSchema" in decl or "parameters_json_schema" in decl
                if "parameters" in decl and as_json_schema:
                    return "parameters and parametersJsonSchema are mutually exclusive"
        config = body.get("generationConfig") or body.get("generation_config") or {}
        json_schema = config.get("responseJsonSchema", config.get("response_json_schema"))
        schema = config.get("responseSchema", config.get("response_schema"))
        if json_schema is not None and schema is not None:
            return "responseSchema and responseJsonSchema are mutually exclusive"
        if json_schema is not None or schema is not None:
            mime = config.get("responseMimeType", config.get("response_mime_type"))
            if mime != "application/json":
                return "a response schema needs responseMimeType application/json"
        return None

    def error_body(self, status: int, message: str | None = None) -> Any:
        kinds = {
            400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
            401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
            403: ("PERMISSION_DENIED", "Method doesn't allow unregistered callers."),
            404: ("NOT_FOUND", "Requested entity was not found."),
            429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
            500: ("INTERNAL", "An internal error has occurred."),
            503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
        }
        kind, default = kinds.get(status, ("UNKNOWN", "Error"))
        return {"error": {"code": status, "message": message or default, "status": kind}}

    def invalid_key_body(self) -> Any:
        return {
            "error": {
                "code": 400,
                "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    }
                ],
            }
        }

    def encode(self, event: Event) -> bytes:
        data = event.data if isinstance(event.data, str) else _json(event.data)
        return f"data: {data}\r\n\r\n".encode()

    # -- response builders
    def response(
        self,
        parts: list[dict[str, Any]],
        finish_reason: str | None = None,
        usage: dict[str, int] | None = None,
    ) -> Event:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish_reason:
            candidate["finishReason"] = finish_reason
        data: dict[str, Any] = {
            "candidates": [candidate],
            "modelVersion": self.model,
            "responseId": "fake-response",
        }
        if usage:
            data["usageMetadata"] = usage
        return Event(data)

    def text(self, *pieces: str) -> list[Event]:
        return [self.response([{"text": piece}]) for piece in pieces]

    @staticmethod
    def function_call(
        name: str, args: dict[str, Any], call_id: str | None = None, signature: bytes | None = None
    ) -> dict[str, Any]:
        call: dict[str, Any] = {"name": name, "args": args}
        if call_id:
            call["id"] = call_id
        part: dict[str, Any] = {"functionCall": call}
        if signature:
            part["thoughtSignature"] = base64.b64encode(signature).decode()
        return part

    def finish(
        self, reason: str = "STOP", prompt: int = 10, candidates: int = 5, text: str = ""
    ) -> list[Event]:
        usage = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": candidates,
            "totalTokenCount": prompt + candidates,
        }
        return [self.response([{"text": text}], finish_reason=reason, usage=usage)]

    def whole(self, text: str, reason: str = "STOP") -> dict[str, Any]:
        """A whole GenerateContentResponse with one text part."""
        usage = {"promptTokenCount": 310, "candidatesTokenCount": 85, "totalTokenCount": 395}
        return self.response([{"text": text}], finish_reason=reason, usage=usage).data


# --------------------------------------------------------------------------- strict schemas

_UNSUPPORTED = {
    "openai": {"minLength", "maxLength", "patternProperties", "uniqueItems", "allOf", "oneOf"},
    "anthropic": {"minimum", "maximum", "multipleOf", "minLength", "maxLength", "maxItems"},
}


def strict_problem(schema: Any, provider: str, where: str = "schema") -> str | None:
    """Why a provider's strict mode would refuse `schema` (objects closed with
    `additionalProperties: false`; OpenAI: every key required; unsupported keywords)."""
    if not isinstance(schema, dict):
        return None
    for keyword in _UNSUPPORTED[provider]:
        if keyword in schema:
            return f"{where}: '{keyword}' is not supported in strict mode"
    kind = schema.get("type")
    if kind == "object" or (isinstance(kind, list) and "object" in kind):
        if schema.get("additionalProperties") is not False:
            return f"{where}: 'additionalProperties' is required to be supplied and to be false"
        properties = schema.get("properties") or {}
        if provider == "openai" and set(schema.get("required") or []) != set(properties):
            return f"{where}: 'required' is required to include every key in 'properties'"
    for key in ("properties", "$defs", "definitions"):
        for name, sub in (schema.get(key) or {}).items():
            problem = strict_problem(sub, provider, f"{where}.{name}")
            if problem:
                return problem
    for key in ("anyOf", "allOf", "oneOf", "prefixItems"):
        for index, sub in enumerate(schema.get(key) or []):
            problem = strict_problem(sub, provider, f"{where}.{key}[{index}]")
            if problem:
                return problem
    return strict_problem(schema.get("items"), provider, f"{where}.items")
