"""Gemini through the official `google-genai` SDK: `client.aio.models.generate_content_stream`.

On the wire: `POST /{api_version}/models/{model}:streamGenerateContent?alt=sse` with the key in
`x-goog-api-key`; each SSE `data:` line is a GenerateContentResponse whose first candidate holds
the new parts (text pieces, whole `functionCall`s); the last carries `finishReason` and
`usageMetadata`.

Choices made here:
- automatic function calling off (the call loop runs the tools) and automatic stream
  continuation off (a broken stream is a failed turn, not a silent replay);
- the SDK's retries off (the call loop retries once itself);
- the SDK sends through an httpx client of the adapter's own (`HttpOptions.httpx_async_client`)
  whose response hook notes each streamed response: the SDK reads the body inside nested async
  generators that only the garbage collector finalises, so when the consumer stops early (the
  caller barged in) the adapter closes the response itself and the server sees the hang-up;
- tools declared with `parameters_json_schema`, i.e. the tool's JSON schema as is;
- history roles user/model; a tool's result goes back as a `functionResponse` part in a user
  turn (all results of one model turn together), with the call's id. Gemini may leave
  function calls without an id, so those get one here and that id is what the history uses;
- a `functionCall` part may carry a `thoughtSignature`, which must go back with the call in
  the history (Gemini 3 refuses function calling without it): the adapter keeps them by call id
  for the rest of the call.

Structured answers (`complete_structured`) are one `POST .../models/{model}:generateContent`
with `generationConfig.responseMimeType: "application/json"` and `responseJsonSchema` (the
answer's JSON Schema, limited to the keywords Gemini supports); the answer is the candidate's
text parts (thought parts skipped).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from google import genai
from google.genai import errors, types

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
    gemini_response_schema,
    new_call_id,
    parse_json_answer,
    retryable_status,
)

PROVIDER = "google"

_FINISH_REASONS = {
    types.FinishReason.STOP: "stop",
    types.FinishReason.MAX_TOKENS: "length",
}


class GeminiModel:
    """A `LanguageModel` over the Gemini API (Google AI Studio keys)."""

    provider = PROVIDER

    def __init__(self, api_key: str, base_url: str | None) -> None:
        # Responses the SDK opened for the reply being streamed (one reply at a time per call).
        self._responses: list[httpx.Response] = []
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            event_hooks={"response": [self._opened]},
        )
        self._client = genai.Client(
            api_key=api_key,
            http_options=types.HttpOptions(
                base_url=base_url,
                timeout=int(READ_TIMEOUT_S * 1000),
                retry_options=types.HttpRetryOptions(attempts=1),
                httpx_async_client=self._http,
            ),
        )
        self._thought_signatures: dict[str, bytes] = {}

    async def _opened(self, response: httpx.Response) -> None:
        self._responses.append(response)

    async def aclose(self) -> None:
        """Release the HTTP connections (the call is over)."""
        await self._client.aio.aclose()
        await self._http.aclose()

    def request_config(self, request: ChatRequest) -> types.GenerateContentConfig:
        config = types.GenerateContentConfig(
            temperature=request.temperature,
            max_output_tokens=request.max_tokens,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
            automatic_continuation=False,
        )
        if request.system_prompt:
            config.system_instruction = request.system_prompt
        if request.tools:
            config.tools = [
                types.Tool(
                    function_declarations=[
                        types.FunctionDeclaration(
                            name=tool.name,
                            description=tool.description,
                            parameters_json_schema=tool.parameters,
                        )
                        for tool in request.tools
                    ]
                )
            ]
        return config

    def contents(self, history: tuple[ChatMessage, ...]) -> list[types.Content]:
        """The history as alternating user/model contents."""
        names = {call.id: call.name for m in history for call in m.tool_calls}
        turns: list[types.Content] = []
        for message in history:
            role, parts = self._parts(message, names)
            if not parts:
                continue
            if turns and turns[-1].role == role and turns[-1].parts is not None:
                turns[-1].parts.extend(parts)
            else:
                turns.append(types.Content(role=role, parts=parts))
        if not turns or turns[0].role != "user":
            turns.insert(0, types.Content(role="user", parts=[types.Part(text=CALL_CONNECTED)]))
        return turns

    def _parts(self, message: ChatMessage, names: dict[str, str]) -> tuple[str, list[types.Part]]:
        if message.role == "tool":
            call_id = message.tool_call_id or ""
            response = types.FunctionResponse(
                id=call_id or None,
                name=message.name or names.get(call_id, ""),
                response=_tool_result(message.text),
            )
            return "user", [types.Part(function_response=response)]
        parts = [types.Part(text=message.text)] if message.text else []
        if message.role == "user":
            return "user", parts
        for call in message.tool_calls:
            parts.append(
                types.Part(
                    function_call=types.FunctionCall(
                        id=call.id, name=call.name, args=call.arguments
                    ),
                    thought_signature=self._thought_signatures.get(call.id),
                )
            )
        return "model", parts

    async def stream(self, request: ChatRequest) -> AsyncIterator[LlmEvent]:
        contents = self.contents(request.messages)
        config = self.request_config(request)
        finish: types.FinishReason | None = None
        usage: types.GenerateContentResponseUsageMetadata | None = None
        called = False
        try:
            responses = await self._client.aio.models.generate_content_stream(
                model=request.model, contents=contents, config=config
            )
            try:
                async for response in responses:
                    usage = response.usage_metadata or usage
                    if not response.candidates:
                        continue
                    candidate = response.candidates[0]
                    if candidate.finish_reason:
                        finish = candidate.finish_reason
                    parts = candidate.content.parts if candidate.content else None
                    for part in parts or ():
                        if part.thought:
                            continue
                        if part.function_call is not None:
                            called = True
                            yield self._tool_call(part)
                        elif part.text:
                            yield TextDelta(part.text)
            finally:
                await responses.aclose()  # type: ignore[attr-defined]
                await self._close_responses()
        except errors.APIError as exc:
            code = exc.code or 0
            message = f"HTTP {code} {exc.status or ''}".rstrip()
            raise ProviderError(PROVIDER, message, retryable=retryable_status(code)) from exc
        except (httpx.HTTPError, TimeoutError) as exc:
            raise ProviderError(PROVIDER, f"connection broke: {type(exc).__name__}") from exc
        except ValueError as exc:  # a malformed event, or a request the SDK refused
            raise ProviderError(PROVIDER, f"bad request or response: {exc}") from exc
        if finish is None:
            raise ProviderError(PROVIDER, "the stream ended before the reply finished")
        reason = _FINISH_REASONS.get(finish, "other")
        if called and reason == "stop":
            reason = "tool_calls"
        input_tokens = usage.prompt_token_count if usage else None
        output_tokens = None
        if usage and usage.candidates_token_count is not None:
            output_tokens = usage.candidates_token_count + (usage.thoughts_token_count or 0)
        yield Finished(reason, input_tokens=input_tokens, output_tokens=output_tokens)

    def structured_config(self, request: StructuredRequest) -> types.GenerateContentConfig:
        config = types.GenerateContentConfig(
            temperature=request.temperature,
            max_output_tokens=request.max_tokens,
            response_mime_type="application/json",
            response_json_schema=gemini_response_schema(request.schema),
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
            http_options=types.HttpOptions(timeout=int(STRUCTURED_TIMEOUT_S * 1000)),
        )
        if request.system_prompt:
            config.system_instruction = request.system_prompt
        return config

    async def complete_structured(self, request: StructuredRequest) -> StructuredReply:
        try:
            response = await self._client.aio.models.generate_content(
                model=request.model,
                contents=self.contents(request.messages),
                config=self.structured_config(request),
            )
        except errors.APIError as exc:
            code = exc.code or 0
            message = f"HTTP {code} {exc.status or ''}".rstrip()
            raise ProviderError(PROVIDER, message, retryable=retryable_status(code)) from exc
        except (httpx.HTTPError, TimeoutError) as exc:
            raise ProviderError(PROVIDER, f"connection broke: {type(exc).__name__}") from exc
        except ValueError as exc:
            raise ProviderError(PROVIDER, f"bad request or response: {exc}") from exc
        finally:
            await self._close_responses()
        text, finish = "", "other"
        if response.candidates:
            candidate = response.candidates[0]
            parts = candidate.content.parts if candidate.content else None
            text = "".join(p.text or "" for p in parts or () if not p.thought)
            if candidate.finish_reason:
                finish = _FINISH_REASONS.get(candidate.finish_reason, "other")
        usage = response.usage_metadata
        output_tokens = None
        if usage and usage.candidates_token_count is not None:
            output_tokens = usage.candidates_token_count + (usage.thoughts_token_count or 0)
        return StructuredReply(
            text=text,
            value=parse_json_answer(text) if finish == "stop" else None,
            enforced=True,
            finish_reason=finish,
            input_tokens=usage.prompt_token_count if usage else None,
            output_tokens=output_tokens,
        )

    async def _close_responses(self) -> None:
        responses, self._responses = self._responses, []
        for response in responses:
            await response.aclose()  # a no-op once the SDK read it to the end

    def _tool_call(self, part: types.Part) -> ToolCall:
        call = part.function_call
        assert call is not None
        call_id = call.id or new_call_id()
        if part.thought_signature:
            self._thought_signatures[call_id] = part.thought_signature
        return ToolCall(id=call_id, name=call.name or "", arguments=dict(call.args or {}))


def _tool_result(text: str) -> dict[str, Any]:
    """A tool's result as the function response object Gemini expects ("output" otherwise)."""
    try:
        value = json.loads(text)
    except ValueError:
        return {"output": text}
    return value if isinstance(value, dict) else {"output": value}
