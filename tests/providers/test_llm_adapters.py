"""The language-model adapters, each through its official SDK against a local fake of the
provider's streaming HTTP API (tests/providers/fake_llm_servers.py)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from talkturo.voice.providers.base import (
    ChatMessage,
    ChatRequest,
    Finished,
    LanguageModel,
    LlmEvent,
    ProviderError,
    TextDelta,
    ToolCall,
    ToolSpec,
)
from talkturo.voice.providers.llm.anthropic import CALL_CONNECTED, AnthropicModel
from talkturo.voice.providers.llm.gemini import GeminiModel
from talkturo.voice.providers.llm.openai_compat import OpenAICompatibleModel
from talkturo.voice.providers.registry import Providers
from tests.asgi_server import served
from tests.providers.fake_llm_servers import (
    AnthropicFake,
    Cut,
    Event,
    FakeHost,
    FakeLlmServer,
    GeminiFake,
    OpenAIFake,
    Pause,
    Step,
)

KEY = "test-key"
WAIT_S = 10.0

Serve = Callable[[FakeLlmServer], str]


@pytest.fixture(scope="module")
def fake_host() -> Iterator[tuple[FakeHost, str]]:
    host = FakeHost()
    with served(host) as url:
        yield host, url


@pytest.fixture
def serve(fake_host: tuple[FakeHost, str]) -> Serve:
    """Puts a fresh fake behind the shared server; returns the server's URL."""
    host, url = fake_host

    def install(fake: FakeLlmServer) -> str:
        host.install(fake)
        return url

    return install


BOOK = ToolSpec(
    name="book_slot",
    description="Book a meeting slot.",
    parameters={
        "type": "object",
        "properties": {"day": {"type": "string"}, "time": {"type": "string"}},
        "required": ["day", "time"],
    },
)
LOOKUP = ToolSpec(
    name="lookup_contact",
    description="Find a contact by phone number.",
    parameters={"type": "object", "properties": {"phone": {"type": "string"}}},
)


def request(model: str = "test-model", **changes: Any) -> ChatRequest:
    base: dict[str, Any] = {
        "model": model,
        "system_prompt": "You are Ana from Acme. Keep replies short.",
        "messages": (ChatMessage("user", "Hi, who is this?"),),
        "tools": (BOOK,),
        "temperature": 0.3,
        "max_tokens": 120,
    }
    base.update(changes)
    return ChatRequest(**base)


# A conversation the assistant opened, with two tool calls answered in one go.
HISTORY = (
    ChatMessage("assistant", "Hello, this is Ana from Acme."),
    ChatMessage("user", "Hi. Can I book Monday at ten?"),
    ChatMessage(
        "assistant",
        "Let me check.",
        tool_calls=(
            ToolCall("call_a", "lookup_contact", {"phone": "+15550100"}),
            ToolCall("call_b", "book_slot", {"day": "monday", "time": "10:00"}),
        ),
    ),
    ChatMessage("tool", '{"name": "Bo"}', tool_call_id="call_a", name="lookup_contact"),
    ChatMessage("tool", "Booked.", tool_call_id="call_b", name="book_slot"),
    ChatMessage("user", "Thanks."),
    ChatMessage("user", "Anything else?"),
)


async def _collect(model: LanguageModel, req: ChatRequest, go: threading.Event | None = None):
    """All events of one reply; `go` is set as soon as the first text delta arrives."""
    events: list[LlmEvent] = []

    async def consume() -> None:
        async for event in model.stream(req):
            events.append(event)
            if go is not None and isinstance(event, TextDelta):
                go.set()

    try:
        await asyncio.wait_for(consume(), WAIT_S)
    finally:
        await model.aclose()
    return events


def collect(model: LanguageModel, req: ChatRequest, go: threading.Event | None = None):
    return asyncio.run(_collect(model, req, go))


def provider_error(model: LanguageModel, req: ChatRequest) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        collect(model, req)
    return info.value


def texts(events: list[LlmEvent]) -> list[str]:
    return [e.text for e in events if isinstance(e, TextDelta)]


# --------------------------------------------------------------------------- per-provider cases


@dataclass
class Case:
    """How to script one provider's fake and build its adapter."""

    name: str
    fake: Callable[[], FakeLlmServer]
    model: Callable[[str, str], LanguageModel]
    text: Callable[[Any, list[str], threading.Event | None], list[Step]]
    split_tool: Callable[[Any], list[Step]]
    cut: Callable[[Any], list[Step]]
    stream_error: Callable[[Any], list[Step]]
    length: Callable[[Any], list[Step]]
    # statuses with the provider's documented error body -> retryable
    statuses: dict[int, bool]


def _paused(first: list[Step], rest: list[Step], go: threading.Event | None) -> list[Step]:
    return [*first, Pause(go), *rest] if go is not None else [*first, *rest]


def _openai_text(f: OpenAIFake, pieces: list[str], go: threading.Event | None) -> list[Step]:
    events = f.text(*pieces)  # role chunk, then one chunk per piece
    return _paused(events[:2], [*events[2:], *f.finish("stop")], go)


def _anthropic_text(f: AnthropicFake, pieces: list[str], go: threading.Event | None) -> list[Step]:
    events = [*f.start(), *f.text_block(0, *pieces)]  # start, block start, ping, deltas
    first, rest = events[:4], events[4:]
    return _paused(first, [*rest, f.block_stop(0), *f.finish("end_turn")], go)


def _gemini_text(f: GeminiFake, pieces: list[str], go: threading.Event | None) -> list[Step]:
    events = f.text(*pieces)
    return _paused(events[:1], [*events[1:], *f.finish("STOP")], go)


CASES = [
    Case(
        name="openai",
        fake=OpenAIFake,
        model=lambda url, key: OpenAICompatibleModel("openai", api_key=key, base_url=f"{url}/v1"),
        text=_openai_text,
        split_tool=lambda f: [
            *f.tool_call(0, "call_1", "book_slot", '{"day": "mon', 'day", "ti', 'me": "10:00"}'),
            *f.finish("tool_calls"),
        ],
        cut=lambda f: [*f.text("Hello", " there"), Cut()],
        stream_error=lambda f: [*f.text("Hello"), f.error_event()],
        length=lambda f: [*f.text("Well"), *f.finish("length")],
        statuses={400: False, 401: False, 403: False, 429: True, 500: True, 503: True},
    ),
    Case(
        name="anthropic",
        fake=AnthropicFake,
        model=lambda url, key: AnthropicModel(api_key=key, base_url=url),
        text=_anthropic_text,
        split_tool=lambda f: [
            *f.start(),
            *f.tool_block(0, "toolu_1", "book_slot", '{"day": "mon', 'day", "ti', 'me": "10:00"}'),
            *f.finish("tool_use"),
        ],
        cut=lambda f: [*f.start(), *f.text_block(0, "Hello", " there"), Cut()],
        stream_error=lambda f: [*f.start(), *f.text_block(0, "Hello"), f.error_event()],
        length=lambda f: [
            *f.start(),
            *f.text_block(0, "Well"),
            f.block_stop(0),
            *f.finish("max_tokens"),
        ],
        statuses={400: False, 401: False, 403: False, 429: True, 500: True, 529: True},
    ),
    Case(
        name="gemini",
        fake=GeminiFake,
        model=lambda url, key: GeminiModel(api_key=key, base_url=url),
        text=_gemini_text,
        # Gemini sends a function call whole; the split is across the stream's responses.
        split_tool=lambda f: [
            *f.text("Booking now."),
            f.response([f.function_call("book_slot", {"day": "monday", "time": "10:00"}, "fc_1")]),
            *f.finish("STOP"),
        ],
        cut=lambda f: [*f.text("Hello", " there"), Cut()],
        stream_error=lambda f: [
            *f.text("Hello"),
            Event({"error": {"code": 503, "message": "Overloaded", "status": "UNAVAILABLE"}}),
        ],
        length=lambda f: [*f.text("Well"), *f.finish("MAX_TOKENS")],
        statuses={400: False, 401: False, 403: False, 429: True, 500: True, 503: True},
    ),
]
BY_NAME = {case.name: case for case in CASES}
each_provider = pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])


# --------------------------------------------------------------------------- shared behaviour


@each_provider
def test_text_streams_in_order_and_before_the_reply_is_complete(case: Case, serve: Serve) -> None:
    fake = case.fake()
    go = threading.Event()
    # The fake holds back everything after the first piece until the test has seen it.
    fake.reply(*case.text(fake, ["Hi,", " this is", " Ana."], go))
    url = serve(fake)
    events = collect(case.model(url, KEY), request(), go)
    assert fake.pause_timeouts == 0, "the first delta only came out after the whole reply"
    assert texts(events) == ["Hi,", " this is", " Ana."]
    assert isinstance(events[-1], Finished)
    assert events[-1].reason == "stop"
    assert events[-1].input_tokens and events[-1].output_tokens
    assert sum(isinstance(e, Finished) for e in events) == 1
    assert fake.completed.is_set()
    assert fake.problems == []


@each_provider
def test_tool_call_arrives_whole(case: Case, serve: Serve) -> None:
    fake = case.fake()
    fake.reply(*case.split_tool(fake))
    url = serve(fake)
    events = collect(case.model(url, KEY), request())
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert len(calls) == 1
    assert calls[0].name == "book_slot"
    assert calls[0].arguments == {"day": "monday", "time": "10:00"}
    assert calls[0].id
    assert events[-1] == Finished("tool_calls", events[-1].input_tokens, events[-1].output_tokens)
    assert events.index(calls[0]) < len(events) - 1


@each_provider
def test_length_limit_is_reported(case: Case, serve: Serve) -> None:
    fake = case.fake()
    fake.reply(*case.length(fake))
    url = serve(fake)
    events = collect(case.model(url, KEY), request())
    assert texts(events) == ["Well"]
    assert isinstance(events[-1], Finished)
    assert events[-1].reason == "length"


@each_provider
def test_wrong_key_is_refused_and_not_retryable(case: Case, serve: Serve) -> None:
    fake = case.fake()
    url = serve(fake)
    error = provider_error(case.model(url, "wrong-key"), request())
    assert error.retryable is False
    assert fake.problems, "the fake should have refused the key"
    assert "wrong-key" not in str(error)


@pytest.mark.parametrize(
    ("case", "status"),
    [(case, status) for case in CASES for status in case.statuses],
    ids=[f"{case.name}-{status}" for case in CASES for status in case.statuses],
)
def test_error_statuses(case: Case, status: int, serve: Serve) -> None:
    fake = case.fake()
    fake.fail(status)
    url = serve(fake)
    error = provider_error(case.model(url, KEY), request())
    assert error.retryable is case.statuses[status]
    assert error.provider in ("openai", "anthropic", "google")
    assert str(status) in error.message
    assert len(fake.received) == 1, "the SDK must not retry on its own"


@each_provider
def test_stream_cut_midway_is_a_retryable_error(case: Case, serve: Serve) -> None:
    fake = case.fake()
    fake.reply(*case.cut(fake))
    seen: list[LlmEvent] = []

    url = serve(fake)

    async def scenario() -> None:
        model = case.model(url, KEY)
        try:
            async for event in model.stream(request()):
                seen.append(event)
        finally:
            await model.aclose()

    with pytest.raises(ProviderError) as info:
        asyncio.run(asyncio.wait_for(scenario(), WAIT_S))
    assert info.value.retryable is True
    assert not any(isinstance(e, Finished) for e in seen)


@each_provider
def test_error_event_inside_the_stream(case: Case, serve: Serve) -> None:
    fake = case.fake()
    fake.reply(*case.stream_error(fake))
    url = serve(fake)
    error = provider_error(case.model(url, KEY), request())
    assert error.retryable is True


@each_provider
def test_cancelling_the_consumer_closes_the_http_stream(case: Case, serve: Serve) -> None:
    fake = case.fake()
    never = threading.Event()
    fake.reply(*case.text(fake, ["Hi,", " still", " talking"], never))

    url = serve(fake)

    async def scenario() -> bool:
        model = case.model(url, KEY)
        first = asyncio.Event()

        async def consume() -> None:
            async for event in model.stream(request()):
                if isinstance(event, TextDelta):
                    first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), WAIT_S)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # The loop keeps running while the fake is asked, so closing callbacks can run.
        hung_up = await asyncio.to_thread(fake.disconnected.wait, WAIT_S)
        await model.aclose()
        return hung_up

    hung_up = asyncio.run(scenario())
    never.set()
    assert hung_up, "the fake never saw the client hang up"
    assert not fake.completed.is_set()
    assert fake.pause_timeouts == 0


@each_provider
def test_closing_the_reply_early_closes_the_http_stream(case: Case, serve: Serve) -> None:
    """The loop may stop reading (the caller barged in) and close the reply's iterator."""
    fake = case.fake()
    never = threading.Event()
    fake.reply(*case.text(fake, ["Hi,", " still", " talking"], never))

    url = serve(fake)

    async def scenario() -> bool:
        model = case.model(url, KEY)
        reply = model.stream(request())
        event = await asyncio.wait_for(anext(reply), WAIT_S)
        while not isinstance(event, TextDelta):
            event = await asyncio.wait_for(anext(reply), WAIT_S)
        await reply.aclose()
        hung_up = await asyncio.to_thread(fake.disconnected.wait, WAIT_S)
        await model.aclose()
        return hung_up

    hung_up = asyncio.run(scenario())
    never.set()
    assert hung_up, "the fake never saw the client hang up"
    assert not fake.completed.is_set()


# --------------------------------------------------------------------------- OpenAI-compatible


def test_openai_request_fields_and_auth(serve: Serve) -> None:
    fake = OpenAIFake()
    fake.reply(*fake.text("Hi."), *fake.finish())
    url = serve(fake)
    collect(OpenAICompatibleModel("openai", api_key=KEY, base_url=f"{url}/v1"), request())
    sent = fake.last
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    body = sent.body
    assert body["model"] == "test-model"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.3
    assert body["max_completion_tokens"] == 120
    assert "max_tokens" not in body
    assert body["messages"][0] == {
        "role": "system",
        "content": "You are Ana from Acme. Keep replies short.",
    }
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "book_slot",
                "description": "Book a meeting slot.",
                "parameters": BOOK.parameters,
            },
        }
    ]
    assert fake.problems == []


def test_openai_history_translation(serve: Serve) -> None:
    fake = OpenAIFake()
    fake.reply(*fake.text("Sure."), *fake.finish())
    url = serve(fake)
    model = OpenAICompatibleModel("openai", api_key=KEY, base_url=f"{url}/v1")
    collect(model, request(messages=HISTORY, tools=(BOOK, LOOKUP)))
    assert fake.problems == []
    assert fake.last.body["messages"][1:] == [
        {"role": "assistant", "content": "Hello, this is Ana from Acme."},
        {"role": "user", "content": "Hi. Can I book Monday at ten?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "lookup_contact", "arguments": '{"phone": "+15550100"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {
                        "name": "book_slot",
                        "arguments": '{"day": "monday", "time": "10:00"}',
                    },
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": '{"name": "Bo"}'},
        {"role": "tool", "tool_call_id": "call_b", "content": "Booked."},
        {"role": "user", "content": "Thanks."},
        {"role": "user", "content": "Anything else?"},
    ]


def test_openai_parallel_tool_calls_and_invalid_arguments(serve: Serve) -> None:
    fake = OpenAIFake()
    fake.reply(
        *fake.text("One moment."),
        *fake.tool_call(0, "call_1", "lookup_contact", '{"phone": ', '"+1555"}'),
        *fake.tool_call(1, "call_2", "book_slot", '{"day": mon'),
        *fake.finish("tool_calls"),
    )
    url = serve(fake)
    model = OpenAICompatibleModel("openai", api_key=KEY, base_url=f"{url}/v1")
    events = collect(model, request(tools=(BOOK, LOOKUP)))
    assert events[0] == TextDelta("One moment.")
    assert events[1:3] == [
        ToolCall("call_1", "lookup_contact", {"phone": "+1555"}),
        ToolCall("call_2", "book_slot", {"_raw": '{"day": mon'}),
    ]
    assert events[3] == Finished("tool_calls", 12, 7)


@pytest.mark.parametrize(
    ("provider", "base_path", "model_name", "temperature", "expect"),
    [
        ("deepseek", "", "deepseek-chat", 0.3, {"temperature": 0.3}),
        ("qwen", "/compatible-mode/v1", "qwen-plus", 0.3, {"temperature": 0.3}),
        # kimi-* models fix temperature and would think unless told not to.
        ("kimi", "/v1", "kimi-k2.5", 0.3, {"thinking": {"type": "disabled"}}),
        # moonshot-v1 takes temperature in [0, 1].
        ("kimi", "/v1", "moonshot-v1-8k", 1.5, {"temperature": 1.0}),
    ],
)
def test_openai_compatible_providers(
    provider: str,
    base_path: str,
    model_name: str,
    temperature: float,
    expect: dict[str, Any],
    serve: Serve,
) -> None:
    fake = OpenAIFake()
    fake.reply(*fake.text("Hello", "!"), *fake.finish())
    url = serve(fake)
    model = OpenAICompatibleModel(provider, api_key=KEY, base_url=url + base_path)
    assert model.provider == provider
    events = collect(model, request(model_name, temperature=temperature))
    assert texts(events) == ["Hello", "!"]
    sent = fake.last
    assert sent.path == f"{base_path}/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body["model"] == model_name
    assert sent.body["max_tokens"] == 120
    assert "max_completion_tokens" not in sent.body
    for name, value in expect.items():
        assert sent.body[name] == value
    if "temperature" not in expect:
        assert "temperature" not in sent.body


def test_local_server_with_model_override(serve: Serve) -> None:
    fake = OpenAIFake(api_key="local")
    fake.reply(*fake.text("Local", " reply"), *fake.finish())
    url = serve(fake)
    model = OpenAICompatibleModel(
        "local", api_key="local", base_url=f"{url}/v1", model_override="llama3.2:3b"
    )
    events = collect(model, request("gpt-4o-mini"))
    assert texts(events) == ["Local", " reply"]
    assert fake.last.body["model"] == "llama3.2:3b"
    assert fake.last.body["max_tokens"] == 120


def test_registry_builds_the_openai_compatible_adapters(serve: Serve) -> None:
    fake = OpenAIFake()
    fake.reply(*fake.text("From DeepSeek"), *fake.finish())
    fake.reply(*fake.text("From local"), *fake.finish())
    url = serve(fake)
    deepseek = Providers({"DEEPSEEK_API_KEY": KEY, "DEEPSEEK_BASE_URL": url}).language_model(
        "deepseek"
    )
    assert texts(collect(deepseek, request("deepseek-chat"))) == ["From DeepSeek"]
    local = Providers(
        {
            "LOCAL_LLM_BASE_URL": f"{url}/v1",
            "LOCAL_LLM_API_KEY": KEY,
            "LOCAL_LLM_MODEL": "qwen2.5:7b",
        }
    ).language_model("anthropic")
    assert local.provider == "local"
    assert texts(collect(local, request("claude-haiku-4-5"))) == ["From local"]
    assert [r.body["model"] for r in fake.received] == ["deepseek-chat", "qwen2.5:7b"]


# --------------------------------------------------------------------------- Anthropic


def test_anthropic_request_fields_and_auth(serve: Serve) -> None:
    fake = AnthropicFake()
    fake.reply(*fake.start(), *fake.text_block(0, "Hi."), fake.block_stop(0), *fake.finish())
    url = serve(fake)
    collect(AnthropicModel(api_key=KEY, base_url=url), request("claude-haiku-4-5"))
    assert fake.problems == []
    sent = fake.last
    assert sent.path == "/v1/messages"
    assert sent.headers["anthropic-version"] == "2026-10-21"
    # SDK 2.x sends the key as a bearer token; the API takes it there or in x-api-key.
    assert sent.headers.get("x-api-key") == KEY or sent.headers["authorization"] == f"Bearer {KEY}"
    body = sent.body
    assert body["model"] == "claude-haiku-4-5"
    assert body["max_tokens"] == 120
    assert body["stream"] is True
    assert body["system"] == "You are Ana from Acme. Keep replies short."
    # API version 2026-10-21 refuses sampling parameters.
    assert "temperature" not in body
    assert body["tools"] == [
        {
            "name": "book_slot",
            "description": "Book a meeting slot.",
            "input_schema": BOOK.parameters,
        }
    ]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi, who is this?"}]}
    ]


def test_anthropic_history_translation(serve: Serve) -> None:
    fake = AnthropicFake()
    fake.reply(*fake.start(), *fake.text_block(0, "Sure."), fake.block_stop(0), *fake.finish())
    url = serve(fake)
    model = AnthropicModel(api_key=KEY, base_url=url)
    collect(model, request("claude-haiku-4-5", messages=HISTORY, tools=(BOOK, LOOKUP)))
    assert fake.problems == []
    assert fake.last.body["messages"] == [
        # The assistant opened the call; the API wants a user turn first.
        {"role": "user", "content": [{"type": "text", "text": CALL_CONNECTED}]},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "Hello, this is Ana from Acme."}],
        },
        {"role": "user", "content": [{"type": "text", "text": "Hi. Can I book Monday at ten?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "call_a",
                    "name": "lookup_contact",
                    "input": {"phone": "+15550100"},
                },
                {
                    "type": "tool_use",
                    "id": "call_b",
                    "name": "book_slot",
                    "input": {"day": "monday", "time": "10:00"},
                },
            ],
        },
        # Both results and the caller's next words in one user turn, results first.
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_a", "content": '{"name": "Bo"}'},
                {"type": "tool_result", "tool_use_id": "call_b", "content": "Booked."},
                {"type": "text", "text": "Thanks."},
                {"type": "text", "text": "Anything else?"},
            ],
        },
    ]


def test_anthropic_text_then_tool_use_and_invalid_input(serve: Serve) -> None:
    fake = AnthropicFake()
    fake.reply(
        *fake.start(input_tokens=40),
        *fake.text_block(0, "Checking", " now."),
        fake.block_stop(0),
        *fake.tool_block(1, "toolu_a", "lookup_contact", '{"phone": "+1', '555"}'),
        *fake.tool_block(2, "toolu_b", "book_slot", '{"day": '),
        *fake.finish("tool_use", output_tokens=33),
    )
    url = serve(fake)
    model = AnthropicModel(api_key=KEY, base_url=url)
    events = collect(model, request("claude-haiku-4-5", tools=(BOOK, LOOKUP)))
    assert events == [
        TextDelta("Checking"),
        TextDelta(" now."),
        ToolCall("toolu_a", "lookup_contact", {"phone": "+1555"}),
        ToolCall("toolu_b", "book_slot", {"_raw": '{"day": '}),
        Finished("tool_calls", input_tokens=40, output_tokens=33),
    ]


def test_anthropic_stream_without_message_stop_is_an_error(serve: Serve) -> None:
    fake = AnthropicFake()
    fake.reply(*fake.start(), *fake.text_block(0, "Hello"), fake.block_stop(0))
    url = serve(fake)
    error = provider_error(AnthropicModel(api_key=KEY, base_url=url), request("claude"))
    assert error.retryable is True


def test_registry_builds_the_anthropic_adapter(serve: Serve) -> None:
    fake = AnthropicFake()
    fake.reply(
        *fake.start(), *fake.text_block(0, "Claude here."), fake.block_stop(0), *fake.finish()
    )
    url = serve(fake)
    env = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": url}
    model = Providers(env).language_model("anthropic")
    assert model.provider == "anthropic"
    assert texts(collect(model, request("claude-haiku-4-5"))) == ["Claude here."]


# --------------------------------------------------------------------------- Gemini


def test_gemini_request_fields_and_auth(serve: Serve) -> None:
    fake = GeminiFake()
    fake.reply(*fake.text("Hi."), *fake.finish())
    url = serve(fake)
    collect(GeminiModel(api_key=KEY, base_url=url), request("gemini-2.5-flash"))
    assert fake.problems == []
    sent = fake.last
    assert sent.path in (
        "/v1/models/gemini-2.5-flash:streamGenerateContent",
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
    )
    assert sent.query["alt"] == "sse"
    assert sent.headers["x-goog-api-key"] == KEY
    body = sent.body
    assert body["systemInstruction"]["parts"] == [
        {"text": "You are Ana from Acme. Keep replies short."}
    ]
    assert body["generationConfig"] == {"temperature": 0.3, "maxOutputTokens": 120}
    [declaration] = body["tools"][0]["functionDeclarations"]
    assert declaration["name"] == "book_slot"
    assert declaration["description"] == "Book a meeting slot."
    schema = declaration.get("parametersJsonSchema", declaration.get("parameters_json_schema"))
    assert schema == BOOK.parameters
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Hi, who is this?"}]}]


def test_gemini_history_translation(serve: Serve) -> None:
    fake = GeminiFake()
    fake.reply(*fake.text("Sure."), *fake.finish())
    url = serve(fake)
    model = GeminiModel(api_key=KEY, base_url=url)
    collect(model, request("gemini-2.5-flash", messages=HISTORY, tools=(BOOK, LOOKUP)))
    assert fake.problems == []
    assert fake.last.body["contents"] == [
        {"role": "user", "parts": [{"text": CALL_CONNECTED}]},
        {"role": "model", "parts": [{"text": "Hello, this is Ana from Acme."}]},
        {"role": "user", "parts": [{"text": "Hi. Can I book Monday at ten?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Let me check."},
                {
                    "functionCall": {
                        "id": "call_a",
                        "name": "lookup_contact",
                        "args": {"phone": "+15550100"},
                    }
                },
                {
                    "functionCall": {
                        "id": "call_b",
                        "name": "book_slot",
                        "args": {"day": "monday", "time": "10:00"},
                    }
                },
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "id": "call_a",
                        "name": "lookup_contact",
                        "response": {"name": "Bo"},
                    }
                },
                {
                    "functionResponse": {
                        "id": "call_b",
                        "name": "book_slot",
                        "response": {"output": "Booked."},
                    }
                },
                {"text": "Thanks."},
                {"text": "Anything else?"},
            ],
        },
    ]


def test_gemini_call_without_id_keeps_ours_and_its_thought_signature(serve: Serve) -> None:
    fake = GeminiFake()
    fake.reply(
        fake.response(
            [
                fake.function_call(
                    "lookup_contact", {"phone": "+1555"}, signature=b"opaque-signature"
                )
            ]
        ),
        *fake.finish("STOP"),
    )
    fake.reply(*fake.text("You are Bo."), *fake.finish())
    url = serve(fake)
    model = GeminiModel(api_key=KEY, base_url=url)

    async def two_turns() -> tuple[list[LlmEvent], list[LlmEvent]]:
        try:
            first: list[LlmEvent] = []
            async for event in model.stream(request("gemini-2.5-flash", tools=(LOOKUP,))):
                first.append(event)
            [call] = [e for e in first if isinstance(e, ToolCall)]
            history = (
                ChatMessage("user", "Who am I?"),
                ChatMessage("assistant", tool_calls=(call,)),
                ChatMessage("tool", '{"name": "Bo"}', tool_call_id=call.id),
            )
            second = [
                e
                async for e in model.stream(
                    request("gemini-2.5-flash", messages=history, tools=(LOOKUP,))
                )
            ]
            return first, second
        finally:
            await model.aclose()

    first, second = asyncio.run(asyncio.wait_for(two_turns(), WAIT_S))
    [call] = [e for e in first if isinstance(e, ToolCall)]
    assert call.id.startswith("call_")
    assert call.arguments == {"phone": "+1555"}
    assert first[-1] == Finished("tool_calls", 10, 5)
    assert texts(second) == ["You are Bo."]
    assert fake.problems == []
    model_turn, answer = fake.last.body["contents"][1:]
    assert model_turn == {
        "role": "model",
        "parts": [
            {
                "functionCall": {
                    "id": call.id,
                    "name": "lookup_contact",
                    "args": {"phone": "+1555"},
                },
                "thoughtSignature": base64.b64encode(b"opaque-signature").decode(),
            }
        ],
    }
    assert answer == {
        "role": "user",
        "parts": [
            {
                "functionResponse": {
                    "id": call.id,
                    "name": "lookup_contact",
                    "response": {"name": "Bo"},
                }
            }
        ],
    }


def test_gemini_stream_without_finish_reason_is_an_error(serve: Serve) -> None:
    fake = GeminiFake()
    fake.reply(*fake.text("Hello", " there"))
    url = serve(fake)
    error = provider_error(GeminiModel(api_key=KEY, base_url=url), request("gemini-2.5-flash"))
    assert error.retryable is True
    assert len(fake.received) == 1, "no silent continuation request"


def test_registry_builds_the_gemini_adapter(serve: Serve) -> None:
    fake = GeminiFake()
    fake.reply(*fake.text("Gemini here."), *fake.finish())
    url = serve(fake)
    model = Providers({"GEMINI_API_KEY": KEY, "GEMINI_BASE_URL": url}).language_model("google")
    assert model.provider == "google"
    assert texts(collect(model, request("gemini-2.5-flash"))) == ["Gemini here."]
