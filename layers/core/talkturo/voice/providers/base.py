"""What the live call loop asks of the AI providers, in the platform's own types.

Three kinds of adapter, one per provider, each in its own module under `llm/`, `stt/` and `tts/`
and the only code that touches that provider's SDK:

- `LanguageModel.stream(request)`: the reply to a conversation, streamed as `TextDelta`s and
  `ToolCall`s, closed by one `Finished`.
- `Transcriber.open(options)` → a `TranscriberStream`: telephone audio in (8 kHz mu-law, any
  chunk size), `SpeechStarted` / `Transcript` / `UtteranceEnd` events out.
- `Synthesizer.synthesize(text)`: one speakable piece of text (a sentence or clause) as a
  stream of 8 kHz mu-law audio chunks, the first as early as the provider allows.

Adapters raise `ProviderError` for anything the provider or the connection does wrong (with
`retryable` when trying again may help); the loop decides what the caller hears. Every adapter
is built by `providers.registry` from the assistant's configuration and the provider keys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

# --------------------------------------------------------------------------- errors


class ProviderError(Exception):
    """A provider failed: refused the request, broke the stream, or timed out."""

    def __init__(self, provider: str, message: str, *, retryable: bool = True) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.message = message
        self.retryable = retryable


# --------------------------------------------------------------------------- language model

Role = Literal["user", "assistant", "tool"]


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call: name, what it does, JSON-schema parameters (an object)."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    """The model asks to call a tool. `id` pairs the call with its result."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ChatMessage:
    """One turn of the conversation as the model sees it.

    user: `text`. assistant: `text` (what the caller heard) and/or `tool_calls`.
    tool: `text` is the tool's result (JSON or prose) for the call `tool_call_id` named `name`.
    """

    role: Role
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class ChatRequest:
    model: str
    system_prompt: str
    messages: tuple[ChatMessage, ...]
    tools: tuple[ToolSpec, ...] = ()
    temperature: float = 0.7
    max_tokens: int = 250


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Finished:
    """The reply is complete. `reason`: stop, tool_calls, length or other."""

    reason: str = "stop"
    input_tokens: int | None = None
    output_tokens: int | None = None


LlmEvent = TextDelta | ToolCall | Finished


class LanguageModel(Protocol):
    provider: str

    def stream(self, request: ChatRequest) -> AsyncIterator[LlmEvent]:
        """Text deltas and complete tool calls (arguments parsed), then one Finished."""
        ...


@dataclass(frozen=True)
class StructuredRequest:
    """One non-streamed answer that must be a JSON object matching `schema` (post-call work).

    `messages` is the conversation as the model sees it (a repair retry adds the model's bad
    answer and the validation errors); `schema` is a JSON Schema (Draft 2020-12) of an object,
    which each adapter turns into its provider's structured-output form."""

    model: str
    system_prompt: str
    messages: tuple[ChatMessage, ...]
    schema: dict[str, Any]
    schema_name: str = "analysis"
    max_tokens: int = 4000
    temperature: float = 0.0


@dataclass(frozen=True)
class StructuredReply:
    """The model's answer: `text` as written, `value` the parsed JSON (None when it is not
    JSON). `enforced`: the provider constrained decoding to the schema (OpenAI json_schema
    strict, an Anthropic strict tool, a Gemini response schema) rather than JSON mode only;
    the answer is validated locally either way."""

    text: str
    value: Any
    enforced: bool
    finish_reason: str = "stop"
    input_tokens: int | None = None
    output_tokens: int | None = None


class StructuredModel(Protocol):
    provider: str

    async def complete_structured(self, request: StructuredRequest) -> StructuredReply:
        """One whole answer (not streamed); raises ProviderError like `stream`."""
        ...


# --------------------------------------------------------------------------- transcriber


@dataclass(frozen=True)
class TranscriberOptions:
    model: str
    language: str
    keyterms: tuple[str, ...] = ()
    # Audio sent is always 8 kHz mono mu-law (the phone network's).
    sample_rate: int = 8000
    encoding: Literal["mulaw"] = "mulaw"


@dataclass(frozen=True)
class SpeechStarted:
    """The provider heard the caller start speaking."""


@dataclass(frozen=True)
class Transcript:
    """Recognised text. `final`: this stretch of audio will not be revised again.
    `end_of_turn`: the provider believes the caller finished speaking (Deepgram speech_final,
    AssemblyAI end_of_turn …)."""

    text: str
    final: bool
    end_of_turn: bool = False
    confidence: float | None = None


@dataclass(frozen=True)
class UtteranceEnd:
    """The provider detected the end of an utterance without new text (a gap in speech)."""


SttEvent = SpeechStarted | Transcript | UtteranceEnd


class TranscriberStream(Protocol):
    async def send(self, audio: bytes) -> None:
        """Queue mu-law audio; never blocks for long (the loop calls it every 20 ms)."""
        ...

    def events(self) -> AsyncIterator[SttEvent]:
        """Events until the stream ends; raises ProviderError when the connection drops."""
        ...

    async def close(self) -> None:
        """Flush and close; safe to call twice and after a drop."""
        ...


class Transcriber(Protocol):
    provider: str

    async def open(self, options: TranscriberOptions) -> TranscriberStream: ...


# --------------------------------------------------------------------------- synthesizer


@dataclass(frozen=True)
class VoiceOptions:
    model: str
    voice_id: str
    speed: float = 1.0
    language: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Synthesizer(Protocol):
    provider: str

    def synthesize(self, text: str) -> AsyncIterator[bytes]:
        """The text as 8 kHz mono mu-law chunks (any size). Cancelling the iteration stops the
        provider's work for this text."""
        ...

    async def close(self) -> None:
        """Release connections kept between pieces of text."""
        ...
