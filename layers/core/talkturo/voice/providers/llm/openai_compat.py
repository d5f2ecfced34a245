"""Chat Completions models through the official `openai` SDK: OpenAI itself and the providers
that speak the same protocol (DeepSeek, Qwen in DashScope's compatible mode, Kimi from
Moonshot) plus any local OpenAI-compatible server.

One streamed `POST {base_url}/chat/completions` per reply (`stream: true`,
`stream_options.include_usage: true`): content deltas become `TextDelta`s as they arrive,
tool-call deltas are joined by their `index` and come out whole when the stream ends, the
usage chunk (the last one, with no choices) feeds `Finished`.

Provider differences handled here (from each provider's documentation):
- openai: `max_completion_tokens` (`max_tokens` is deprecated there and refused by newer models).
- kimi: `kimi-*` models fix temperature on the platform (any other value is a 400), K2.5/K2.6
  think by default, which voice cannot wait for (`thinking: {"type": "disabled"}`); the
  `moonshot-v1-*` models take temperature in [0, 1].
- deepseek, qwen, local: the common subset (`max_tokens`, `temperature`).

Structured answers (`complete_structured`, post-call analysis) are one non-streamed request:
- openai: `response_format: {type: "json_schema", json_schema: {name, schema, strict: true}}`
  with the schema in strict form (every key required, optional keys nullable,
  `additionalProperties: false`); a schema strict mode cannot express (an object with free
  keys) goes with `strict: false`.
- deepseek, qwen, kimi, local: JSON mode, `response_format: {type: "json_object"}`. The
  schema goes into the system prompt, which must contain the word "json" (DeepSeek and
  OpenAI refuse JSON mode otherwise); the caller validates the answer and may send one repair
  turn. DeepSeek may answer blank content in JSON mode: that is an answer without a value.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import openai
from openai import AsyncOpenAI

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
    CONNECT_TIMEOUT_S,
    READ_TIMEOUT_S,
    STRUCTURED_TIMEOUT_S,
    new_call_id,
    openai_strict_schema,
    parse_arguments,
    parse_json_answer,
    retryable_status,
)

# Kimi models that think unless told not to.
_KIMI_THINKING_OPTIONAL = ("kimi-k2.5", "kimi-k2.6")

_FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}


@dataclass
class _PartialToolCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class OpenAICompatibleModel:
    """A `LanguageModel` over an OpenAI-compatible Chat Completions endpoint."""

    def __init__(
        self,
        provider: str,
        *,
        api_key: str,
        base_url: str | None,
        model_override: str | None = None,
    ) -> None:
        self.provider = provider
        self.model_override = model_override
        self._client = AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=openai.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            max_retries=0,
        )

    async def aclose(self) -> None:
        """Release the HTTP connections (the call is over)."""
        await self._client.close()

    # ------------------------------------------------------------------ request
    def request_params(self, request: ChatRequest) -> dict[str, Any]:
        """The Chat Completions parameters for `request` (everything but `stream`)."""
        model = self.model_override or request.model
        params: dict[str, Any] = {
            "model": model,
            "messages": to_openai_messages(request),
            "stream_options": {"include_usage": True},
        }
        if self.provider == "openai":
            params["max_completion_tokens"] = request.max_tokens
        else:
            params["max_tokens"] = request.max_tokens
        temperature: float | None = request.temperature
        if self.provider == "kimi":
            if model.startswith("kimi-"):
                temperature = None
            elif temperature is not None:
                temperature = min(temperature, 1.0)
            if model.startswith(_KIMI_THINKING_OPTIONAL):
                params["extra_body"] = {"thinking": {"type": "disabled"}}
        if temperature is not None:
            params["temperature"] = temperature
        if request.tools:
            params["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters,
                    },
                }
                for tool in request.tools
            ]
        return params

    # ------------------------------------------------------------------ stream
    async def stream(self, request: ChatRequest) -> AsyncIterator[LlmEvent]:
        params = self.request_params(request)
        try:
            stream = await self._client.chat.completions.create(stream=True, **params)
        except openai.OpenAIError as exc:
            raise self._error(exc) from exc
        calls: dict[int, _PartialToolCall] = {}
        finish_reason: str | None = None
        input_tokens: int | None = None
        output_tokens: int | None = None
        try:
            async for chunk in stream:
                if chunk.usage is not None:
                    input_tokens = chunk.usage.prompt_tokens
                    output_tokens = chunk.usage.completion_tokens
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    delta = choice.delta
                    if delta.content:
                        yield TextDelta(delta.content)
                    for part in delta.tool_calls or ():
                        call = calls.setdefault(part.index, _PartialToolCall())
                        if part.id:
                            call.id = part.id
                        if part.function is not None:
                            if part.function.name:
                                call.name += part.function.name
                            if part.function.arguments:
                                call.arguments.append(part.function.arguments)
                    if choice.finish_reason:
                        finish_reason = choice.finish_reason
        except openai.OpenAIError as exc:
            raise self._error(exc) from exc
        except ValueError as exc:  # an event that is not JSON: the stream is broken
            raise ProviderError(self.provider, f"malformed stream: {exc}") from exc
        finally:
            await stream.close()

        if finish_reason is None:
            raise ProviderError(self.provider, "the stream ended before the reply finished")
        for index in sorted(calls):
            call = calls[index]
            if not call.name:
                raise ProviderError(self.provider, "a streamed tool call had no name")
            yield ToolCall(
                id=call.id or new_call_id(),
                name=call.name,
                arguments=parse_arguments("".join(call.arguments)),
            )
        reason = _FINISH_REASONS.get(finish_reason, "other")
        if calls and reason == "stop":
            # Some compatible servers report "stop" after tool calls.
            reason = "tool_calls"
        yield Finished(reason, input_tokens=input_tokens, output_tokens=output_tokens)

    # ------------------------------------------------------------------ structured
    @property
    def enforces_schema(self) -> bool:
        """Only OpenAI itself constrains decoding to a schema; the others offer JSON mode."""
        return self.provider == "openai"

    def structured_params(self, request: StructuredRequest) -> dict[str, Any]:
        """The Chat Completions parameters of one structured answer (not streamed)."""
        chat = ChatRequest(
            model=request.model,
            system_prompt=request.system_prompt,
            messages=request.messages,
            temperature=request.temperature,
            max_tokens=request.max_tokens,
        )
        params = self.request_params(chat)
        del params["stream_options"]  # refused without `stream: true`
        if self.enforces_schema:
            strict = openai_strict_schema(request.schema)
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": request.schema_name,
                    "schema": strict if strict is not None else request.schema,
                    "strict": strict is not None,
                },
            }
        else:
            system = (
                f"{request.system_prompt}\n\n" if request.system_prompt else ""
            ) + json_mode_instruction(request.schema)
            params["messages"] = [{"role": "system", "content": system}] + [
                m for m in params["messages"] if m["role"] != "system"
            ]
            params["response_format"] = {"type": "json_object"}
        return params

    async def complete_structured(self, request: StructuredRequest) -> StructuredReply:
        params = self.structured_params(request)
        try:
            completion = await self._client.chat.completions.create(
                **params, timeout=STRUCTURED_TIMEOUT_S
            )
        except openai.OpenAIError as exc:
            raise self._error(exc) from exc
        except ValueError as exc:  # an answer that is not JSON at all
            raise ProviderError(self.provider, f"malformed answer: {exc}") from exc
        if not completion.choices:
            raise ProviderError(self.provider, "the answer had no choices")
        choice = completion.choices[0]
        message = choice.message
        if getattr(message, "refusal", None):
            text, finish = "", "refused"
        else:
            text, finish = message.content or "", choice.finish_reason or "other"
        usage = completion.usage
        return StructuredReply(
            text=text,
            value=parse_json_answer(text) if finish != "length" else None,
            enforced=self.enforces_schema,
            finish_reason=_FINISH_REASONS.get(finish, finish),
            input_tokens=usage.prompt_tokens if usage else None,
            output_tokens=usage.completion_tokens if usage else None,
        )

    def _error(self, exc: openai.OpenAIError) -> ProviderError:
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            message = f"HTTP {status}: {_api_message(exc)}"
            return ProviderError(self.provider, message, retryable=retryable_status(status))
        if isinstance(exc, openai.APIConnectionError):
            return ProviderError(self.provider, f"connection failed: {exc.message}")
        if isinstance(exc, openai.APIError):
            # An error event inside an accepted stream (overload, server fault).
            return ProviderError(self.provider, f"stream error: {_api_message(exc)}")
        return ProviderError(self.provider, str(exc), retryable=False)


def _api_message(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return exc.message


def json_mode_instruction(schema: dict[str, Any]) -> str:
    """What JSON mode needs said: answer JSON (the word itself is required), and its shape."""
    return (
        "Answer with one JSON object and nothing else. It must match this JSON Schema:\n"
        + json.dumps(schema, separators=(",", ":"))
    )


def to_openai_messages(request: ChatRequest) -> list[dict[str, Any]]:
    """The conversation as Chat Completions messages, the system prompt first."""
    messages: list[dict[str, Any]] = []
    if request.system_prompt:
        messages.append({"role": "system", "content": request.system_prompt})
    for message in request.messages:
        messages.append(_to_openai_message(message))
    return messages


def _to_openai_message(message: ChatMessage) -> dict[str, Any]:
    if message.role == "user":
        return {"role": "user", "content": message.text}
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.text}
    out: dict[str, Any] = {"role": "assistant", "content": message.text or None}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in message.tool_calls
        ]
    return out
