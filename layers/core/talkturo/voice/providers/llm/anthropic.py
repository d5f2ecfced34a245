"""Claude through the official `anthropic` SDK: one streamed Messages API request per reply.

`POST /v1/messages` with `stream: true`; the SSE events are `message_start` (input usage),
`content_block_start` / `content_block_delta` (`text_delta`, `input_json_delta`) /
`content_block_stop` per block, `message_delta` (stop_reason, output usage), `message_stop`,
with `ping` and `error` events possible anywhere.

The SDK sends API version 2026-10-21, which refuses `temperature`/`top_p`/`top_k` (400 even at
their defaults), so the request's temperature is not sent. The history must alternate
user/assistant and start with a user turn: consecutive same-role turns merge, tool results
go back as `tool_result` blocks (first in their user message), and a conversation the assistant
opened (its first message) gets a short user turn in front.

Structured answers (`complete_structured`) are one non-streamed request with a single tool
whose `input_schema` is the answer's schema, `strict: true` (constrained decoding: every object
`additionalProperties: false`, no numeric or length bounds; those are dropped from what is sent
and checked locally), and `tool_choice: {type: "tool", name}` so that the model must call it;
the tool_use block's `input` is the answer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2
from anthropic import AsyncAnthropic

from talkturo.voice.providers.base import (
    ChatMessage,
    ChatRequest,
    Finished,
    LlmEvent,
    ProviderError,
    StructuredReply,
    StructuredRequest,
    TextDelta,
    ToolCall,
)
from talkturo.voice.providers.llm.common import (
    CALL_CONNECTED,
    CONNECT_TIMEOUT_S,
    READ_TIMEOUT_S,
    STRUCTURED_TIMEOUT_S,
    anthropic_strict_schema,
    parse_arguments,
    retryable_status,
)

PROVIDER = "anthropic"

_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
}
# Error types an in-stream `error` event may carry that are worth one more try.
_RETRYABLE_ERROR_TYPES = {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}


class AnthropicModel:
    """A `LanguageModel` over the Anthropic Messages API."""

    provider = PROVIDER

    def __init__(self, api_key: str, base_url: str | None) -> None:
        self._client = AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            timeout=anthropic.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            max_retries=0,
        )

    async def aclose(self) -> None:
        """Release the HTTP connections (the call is over)."""
        await self._client.close()

    def request_params(self, request: ChatRequest) -> dict[str, Any]:
        """The Messages API parameters for `request` (everything but `stream`)."""
        params: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": to_anthropic_messages(request.messages),
        }
        if request.system_prompt:
            params["system"] = request.system_prompt
        if request.tools:
            params["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters}
                for t in request.tools
            ]
        return params

    def structured_params(self, request: StructuredRequest) -> dict[str, Any]:
        """The Messages API parameters of one structured answer: a forced strict tool."""
        params: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": to_anthropic_messages(request.messages),
            "tools": [
                {
                    "name": request.schema_name,
                    "description": "Record the answer.",
                    "input_schema": anthropic_strict_schema(request.schema),
                    "strict": True,
                }
            ],
            "tool_choice": {"type": "tool", "name": request.schema_name},
        }
        if request.system_prompt:
            params["system"] = request.system_prompt
        return params

    async def complete_structured(self, request: StructuredRequest) -> StructuredReply:
        params = self.structured_params(request)
        try:
            message = await self._client.messages.create(**params, timeout=STRUCTURED_TIMEOUT_S)
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise _error(exc) from exc
        except ValueError as exc:
            raise ProviderError(PROVIDER, f"malformed answer: {exc}") from exc
        value: Any = None
        text = ""
        for block in message.content:
            if block.type == "tool_use" and block.name == request.schema_name:
                value = block.input
                text = json.dumps(block.input)
                break
        usage = message.usage
        finish = _STOP_REASONS.get(message.stop_reason or "", message.stop_reason or "other")
        if finish == "length":
            value = None  # cut short: never trust a truncated answer
        return StructuredReply(
            text=text,
            value=value,
            enforced=True,
            finish_reason="stop" if finish == "tool_calls" else finish,
            input_tokens=usage.input_tokens
            + (usage.cache_creation_input_tokens or 0)
            + (usage.cache_read_input_tokens or 0),
            output_tokens=usage.output_tokens,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[LlmEvent]:
        params = self.request_params(request)
        try:
            stream = await self._client.messages.create(stream=True, **params)
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise _error(exc) from exc
        # index -> [id, name, json pieces] of tool_use blocks being streamed
        tool_blocks: dict[int, tuple[str, str, list[str]]] = {}
        input_tokens: int | None = None
        output_tokens: int | None = None
        stop_reason: str | None = None
        stopped = False
        try:
            async for event in stream:
                if event.type == "message_start":
                    usage = event.message.usage
                    input_tokens = (
                        usage.input_tokens
                        + (usage.cache_creation_input_tokens or 0)
                        + (usage.cache_read_input_tokens or 0)
                    )
                    output_tokens = usage.output_tokens
                elif event.type == "content_block_start":
                    block = event.content_block
                    if block.type == "tool_use":
                        tool_blocks[event.index] = (block.id, block.name, [])
                elif event.type == "content_block_delta":
                    delta = event.delta
                    if delta.type == "text_delta" and delta.text:
                        yield TextDelta(delta.text)
                    elif delta.type == "input_json_delta" and event.index in tool_blocks:
                        tool_blocks[event.index][2].append(delta.partial_json)
                elif event.type == "content_block_stop":
                    if event.index in tool_blocks:
                        call_id, name, pieces = tool_blocks.pop(event.index)
                        yield ToolCall(call_id, name, parse_arguments("".join(pieces)))
                elif event.type == "message_delta":
                    stop_reason = event.delta.stop_reason or stop_reason
                    output_tokens = event.usage.output_tokens
                    if event.usage.input_tokens is not None:
                        input_tokens = (
                            event.usage.input_tokens
                            + (event.usage.cache_creation_input_tokens or 0)
                            + (event.usage.cache_read_input_tokens or 0)
                        )
                elif event.type == "message_stop":
                    stopped = True
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise _error(exc) from exc
        except ValueError as exc:  # an event that is not JSON: the stream is broken
            raise ProviderError(PROVIDER, f"malformed stream: {exc}") from exc
        finally:
            await stream.close()
        if not stopped:
            raise ProviderError(PROVIDER, "the stream ended before message_stop")
        reason = _STOP_REASONS.get(stop_reason or "", "other")
        yield Finished(reason, input_tokens=input_tokens, output_tokens=output_tokens)


def _error(exc: anthropic.AnthropicError | httpx2.HTTPError) -> ProviderError:
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        error_type = _error_type(exc.body)
        if status == 200:  # an `error` event inside an accepted stream
            retryable = error_type in _RETRYABLE_ERROR_TYPES
            return ProviderError(PROVIDER, f"stream error: {error_type}", retryable=retryable)
        detail = f" {error_type}" if error_type else ""
        return ProviderError(PROVIDER, f"HTTP {status}{detail}", retryable=retryable_status(status))
    if isinstance(exc, anthropic.APIConnectionError):
        return ProviderError(PROVIDER, f"connection failed: {exc.message}")
    if isinstance(exc, httpx2.HTTPError):
        return ProviderError(PROVIDER, f"connection broke: {type(exc).__name__}")
    return ProviderError(PROVIDER, str(exc), retryable=False)


def _error_type(body: object) -> str:
    """`error.type` of the documented error body {"type": "error", "error": {type, message}}."""
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict) and isinstance(inner.get("type"), str):
            return str(inner["type"])
    return ""


def to_anthropic_messages(history: tuple[ChatMessage, ...]) -> list[dict[str, Any]]:
    """The history as alternating user/assistant messages of content blocks."""
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    for message in history:
        role, blocks = _blocks(message)
        if not blocks:
            continue
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    if not turns or turns[0][0] != "user":
        turns.insert(0, ("user", [{"type": "text", "text": CALL_CONNECTED}]))
    out = []
    for role, blocks in turns:
        if role == "user":
            # Tool results must open the user message that answers the tool calls.
            blocks = sorted(blocks, key=lambda b: b["type"] != "tool_result")
        out.append({"role": role, "content": blocks})
    return out


def _blocks(message: ChatMessage) -> tuple[str, list[dict[str, Any]]]:
    if message.role == "tool":
        block = {"type": "tool_result", "tool_use_id": message.tool_call_id}
        if message.text:  # an empty text block is refused; a result may be empty
            block["content"] = message.text
        return "user", [block]
    # The API refuses empty text blocks.
    blocks: list[dict[str, Any]] = (
        [{"type": "text", "text": message.text}] if message.text.strip() else []
    )
    if message.role == "assistant":
        blocks.extend(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
            for call in message.tool_calls
        )
        return "assistant", blocks
    return "user", blocks
