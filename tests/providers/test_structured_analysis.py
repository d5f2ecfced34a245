"""Post-call analysis through each language-model adapter's structured answer, against the local
fakes of the providers' HTTP APIs (tests/providers/fake_llm_servers.py) with recorded answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pytest

from talkturo.analysis import analyze
from talkturo.analysis.engine import QUOTE_NOT_SAID
from talkturo.domain.analysis import (
    AnalysisConfig,
    AnalysisContext,
    AnalysisModel,
    AnalysisResult,
    KnownField,
)
from talkturo.domain.calls import TranscriptMessage

# Imported here, not inside the first analysis: the SDKs take seconds to import on a busy machine.
from talkturo.voice.providers.llm import anthropic as _anthropic  # noqa: F401
from talkturo.voice.providers.llm import gemini as _gemini  # noqa: F401
from talkturo.voice.providers.llm import openai_compat as _openai  # noqa: F401
from talkturo.voice.providers.registry import Providers
from tests.asgi_server import served
from tests.providers.fake_llm_servers import (
    AnthropicFake,
    FakeHost,
    FakeLlmServer,
    GeminiFake,
    OpenAIFake,
    strict_problem,
)

KEY = "test-key"
WAIT_S = 60.0
CALL_DATE = date(2026, 3, 5)  # a Thursday

Serve = Callable[[FakeLlmServer], str]


@pytest.fixture(scope="module")
def fake_host() -> Iterator[tuple[FakeHost, str]]:
    host = FakeHost()
    with served(host) as url:
        yield host, url


@pytest.fixture
def serve(fake_host: tuple[FakeHost, str]) -> Serve:
    host, url = fake_host

    def install(fake: FakeLlmServer) -> str:
        host.install(fake)
        return url

    return install


def _m(role: str, text: str) -> TranscriptMessage:
    return TranscriptMessage(role=role, text=text, start_ms=0, end_ms=0)  # type: ignore[arg-type]


CONVERSATION = [
    _m("assistant", "Hi, this is Ana from Acme. Is your email john@acme.com?"),
    _m("user", "No, it's jane at example dot com."),
    _m("assistant", "Thanks Jane. Which plan interests you, Basic or Pro?"),
    _m("user", "The Pro plan, and we are twenty five people."),
    _m("assistant", "Which day suits you for a demo?"),
    _m("user", "Next Tuesday is good."),
]
VOICEMAIL = [
    _m(
        "user", "Hi, you've reached Robert Miles at Miles Plumbing. Leave a message after the tone."
    ),
    _m("assistant", "Hello, this is Ana from Acme, please call us back."),
]

CONFIG = AnalysisConfig.model_validate(
    {
        "dispositions": ["demo_booked", "callback", "not_interested"],
        "structured_data_schema": {
            "type": "object",
            "properties": {
                "budget": {"type": "number", "minimum": 0},
                "decision_maker": {"type": "boolean"},
            },
            "required": ["decision_maker"],
        },
        "extraction_fields": [
            {"key": "email", "description": "The caller's email address"},
            {"key": "plan", "description": "The plan they want", "type": "select"},
            {"key": "team_size", "description": "How many people work there"},
            {"key": "demo_day", "description": "The day of the demo", "type": "date"},
        ],
    }
)
CUSTOM = [
    KnownField(target="contact", key="plan", type="select", options=["Basic", "Pro"]),
    KnownField(target="contact", key="team_size", type="number"),
    KnownField(target="contact", key="demo_day", type="date"),
]


def context(provider: str, model: str, **changes: Any) -> AnalysisContext:
    base: dict[str, Any] = {
        "call_date": CALL_DATE,
        "language": "en",
        "llm": AnalysisModel(provider=provider, model=model),
        "success_criteria": "The caller agrees to a demo.",
        "direction": "outbound",
        "outcome": "answered",
        "answered_by": "human",
        "ended_reason": "caller_hung_up",
        "custom_fields": CUSTOM,
    }
    base.update(changes)
    return AnalysisContext(**base)


GOOD = {
    "summary": "Ana called Jane, who wants the Pro plan and a demo next Tuesday.",
    "success": {"passed": True, "reason": "The caller agreed to a demo."},
    "disposition": "demo_booked",
    "structured_data": {"budget": None, "decision_maker": True},
    "extracted": [
        {
            "field": "contact.email",
            "value": "jane@example.com",
            "quote": "it's jane at example dot com",
        },
        {"field": "contact.plan", "value": "pro", "quote": "The Pro plan"},
        {"field": "contact.team_size", "value": "25", "quote": "we are twenty five people"},
        {"field": "contact.demo_day", "value": "2026-03-10", "quote": "Next Tuesday is good"},
    ],
}


def run(config: AnalysisConfig, messages: list[Any], ctx: AnalysisContext, env: dict[str, str]):
    async def go() -> AnalysisResult:
        return await asyncio.wait_for(analyze(config, messages, ctx, models=Providers(env)), WAIT_S)

    return asyncio.run(go())


def by_key(result: AnalysisResult) -> dict[str, Any]:
    return {item.key: item for item in result.extracted}


def openai_env(url: str) -> dict[str, str]:
    return {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": f"{url}/v1"}


# --------------------------------------------------------------------------- OpenAI strict


def test_openai_json_schema_strict_answer_is_checked_value_by_value(serve: Serve) -> None:
    fake = OpenAIFake()
    url = serve(fake)
    fake.reply_whole(fake.completion(json.dumps(GOOD)))

    result = run(CONFIG, CONVERSATION, context("openai", "gpt-4o-mini"), openai_env(url))

    assert fake.problems == []
    body = fake.last.body
    assert "stream" not in body and "stream_options" not in body
    form = body["response_format"]
    assert form["type"] == "json_schema" and form["json_schema"]["strict"] is True
    assert strict_problem(form["json_schema"]["schema"], "openai") is None
    # The optional key of the assistant's schema became nullable, all keys required.
    budget = form["json_schema"]["schema"]["properties"]["structured_data"]["properties"]["budget"]
    assert budget["type"] == ["number", "null"]
    assert result.method == "model" and result.model == "openai/gpt-4o-mini"
    assert result.success.passed is True and result.disposition == "demo_booked"
    assert result.structured_data == {"decision_maker": True}  # the null left out
    values = {
        k: (v.status, v.value, v.evidence.turn if v.evidence else None)
        for k, v in by_key(result).items()
    }
    assert values == {
        "email": ("accepted", "jane@example.com", 1),
        "plan": ("accepted", "Pro", 3),
        "team_size": ("accepted", 25, 3),
        "demo_day": ("accepted", "2026-03-10", 5),
    }
    assert result.usage.input_tokens == 300 and result.usage.output_tokens == 80
    assert result.skipped_extraction_reason is None and len(result.prompt_hash) == 64


def test_values_that_fail_their_checks_are_rejected_never_corrected(serve: Serve) -> None:
    fake = OpenAIFake()
    url = serve(fake)
    answer = dict(GOOD)
    answer["extracted"] = [
        # The assistant said this address; the caller never did.
        {
            "field": "contact.email",
            "value": "john@acme.com",
            "quote": "Is your email john@acme.com",
        },
        {"field": "contact.plan", "value": "Enterprise", "quote": "The Pro plan"},
        {"field": "contact.team_size", "value": "many", "quote": "we are twenty five people"},
        {"field": "contact.demo_day", "value": "", "quote": ""},
    ]
    fake.reply_whole(fake.completion(json.dumps(answer)))

    result = run(CONFIG, CONVERSATION, context("openai", "gpt-4o-mini"), openai_env(url))

    items = by_key(result)
    assert (items["email"].status, items["email"].reason) == ("rejected", QUOTE_NOT_SAID)
    assert items["email"].evidence is not None and items["email"].evidence.turn is None
    assert items["plan"].status == "rejected" and "one of: Basic, Pro" in str(items["plan"].reason)
    assert items["team_size"].status == "rejected" and "number" in str(items["team_size"].reason)
    assert (items["demo_day"].status, items["demo_day"].value) == ("abstained", None)
    assert all(item.value is None for item in result.extracted)


def test_a_refusal_leaves_everything_empty(serve: Serve) -> None:
    fake = OpenAIFake()
    url = serve(fake)
    fake.reply_whole(fake.completion(None, refusal="I can't help with that."))

    result = run(CONFIG, CONVERSATION, context("openai", "gpt-4o-mini"), openai_env(url))

    assert len(fake.received) == 1  # a refusal is not argued with
    assert result.success.passed is None and result.structured_data is None
    assert all(item.status == "abstained" for item in result.extracted)
    assert any("failed validation" in w for w in result.warnings)


# --------------------------------------------------------------------------- JSON mode + repair


def test_deepseek_json_mode_invalid_json_gets_one_repair_turn(serve: Serve) -> None:
    fake = OpenAIFake()
    url = serve(fake)
    fake.reply_whole(fake.completion('{"summary": "Jane wants Pro", "extracted": [}'))
    fake.reply_whole(fake.completion("```json\n" + json.dumps(GOOD) + "\n```"))
    env = {"DEEPSEEK_API_KEY": KEY, "DEEPSEEK_BASE_URL": url}

    result = run(CONFIG, CONVERSATION, context("deepseek", "deepseek-chat"), env)

    assert fake.problems == []
    assert len(fake.received) == 2
    first, second = (r.body for r in fake.received)
    assert first["response_format"] == {"type": "json_object"}
    assert "json" in first["messages"][0]["content"].casefold()
    repair = second["messages"][-1]["content"]
    assert "not a JSON object" in repair and second["messages"][-2]["role"] == "assistant"
    assert by_key(result)["email"].value == "jane@example.com"
    assert result.usage.input_tokens == 600  # both answers counted


def test_qwen_wrong_types_twice_are_left_empty(serve: Serve) -> None:
    fake = OpenAIFake()
    url = serve(fake)
    wrong = dict(GOOD)
    wrong["success"] = {"passed": "yes", "reason": "agreed"}
    wrong["structured_data"] = {"decision_maker": "maybe"}
    wrong["disposition"] = "other"
    fake.reply_whole(fake.completion(json.dumps(wrong)))
    fake.reply_whole(fake.completion(json.dumps(wrong)))
    env = {"DASHSCOPE_API_KEY": KEY, "QWEN_BASE_URL": f"{url}/compatible-mode/v1"}

    result = run(CONFIG, CONVERSATION, context("qwen", "qwen-plus"), env)

    assert len(fake.received) == 2
    assert "success/passed" in fake.received[1].body["messages"][-1]["content"]
    assert result.success.passed is None  # not guessed
    assert result.structured_data is None and result.disposition is None  # never "other"
    assert by_key(result)["plan"].value == "Pro"  # the valid parts still count
    assert any("left empty" in w for w in result.warnings)


def test_deepseek_blank_content_is_no_answer(serve: Serve) -> None:
    fake = OpenAIFake()
    url = serve(fake)
    fake.reply_whole(fake.completion("   "))
    fake.reply_whole(fake.completion("   "))
    env = {"DEEPSEEK_API_KEY": KEY, "DEEPSEEK_BASE_URL": url}

    result = run(CONFIG, CONVERSATION, context("deepseek", "deepseek-chat"), env)

    assert len(fake.received) == 2
    assert all(item.status == "abstained" for item in result.extracted)
    assert "built by rules" in " ".join(result.warnings)  # the summary says where it came from


def test_kimi_and_a_local_server_use_json_mode(serve: Serve) -> None:
    fake = OpenAIFake()
    url = serve(fake)
    fake.reply_whole(fake.completion(json.dumps(GOOD)))
    fake.reply_whole(fake.completion(json.dumps(GOOD)))
    kimi = {"MOONSHOT_API_KEY": KEY, "KIMI_BASE_URL": f"{url}/v1"}
    local = {
        "LOCAL_LLM_BASE_URL": f"{url}/v1",
        "LOCAL_LLM_MODEL": "qwen3:8b",
        "LOCAL_LLM_API_KEY": KEY,
    }

    kimi_result = run(CONFIG, CONVERSATION, context("kimi", "kimi-k2.5"), kimi)
    local_result = run(CONFIG, CONVERSATION, context("openai", "gpt-4o-mini"), local)

    kimi_body, local_body = (r.body for r in fake.received)
    assert kimi_body["response_format"] == {"type": "json_object"}
    assert kimi_body["thinking"] == {"type": "disabled"}
    assert local_body["model"] == "qwen3:8b"
    assert local_result.model == "local/gpt-4o-mini" and local_result.method == "model"
    assert kimi_result.model == "kimi/kimi-k2.5"


# --------------------------------------------------------------------------- Anthropic, Gemini


def test_anthropic_forced_strict_tool(serve: Serve) -> None:
    fake = AnthropicFake()
    url = serve(fake)
    fake.reply_whole(fake.tool_message("analysis", GOOD))
    env = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": url}

    result = run(CONFIG, CONVERSATION, context("anthropic", "claude-haiku-4-5"), env)

    assert fake.problems == []
    body = fake.last.body
    assert "stream" not in body
    assert body["tool_choice"] == {"type": "tool", "name": "analysis"}
    tool = body["tools"][0]
    assert tool["strict"] is True
    budget = tool["input_schema"]["properties"]["structured_data"]["properties"]["budget"]
    assert "minimum" not in budget  # unsupported in strict mode, checked locally instead
    assert by_key(result)["team_size"].value == 25
    assert result.usage.input_tokens == 320


def test_anthropic_cut_short_answer_is_repaired(serve: Serve) -> None:
    fake = AnthropicFake()
    url = serve(fake)
    fake.reply_whole(fake.tool_message("analysis", {"summary": "Jane"}, stop_reason="max_tokens"))
    fake.reply_whole(fake.tool_message("analysis", GOOD))
    env = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": url}

    result = run(CONFIG, CONVERSATION, context("anthropic", "claude-haiku-4-5"), env)

    assert len(fake.received) == 2 and fake.problems == []
    assert "cut short" in fake.received[1].body["messages"][-1]["content"][0]["text"]
    assert by_key(result)["email"].status == "accepted"


def test_gemini_response_json_schema(serve: Serve) -> None:
    fake = GeminiFake()
    url = serve(fake)
    fake.reply_whole(fake.whole(json.dumps(GOOD)))
    env = {"GEMINI_API_KEY": KEY, "GEMINI_BASE_URL": url}

    result = run(CONFIG, CONVERSATION, context("google", "gemini-2.5-flash"), env)

    assert fake.problems == []
    assert fake.last.path.endswith("/models/gemini-2.5-flash:generateContent")
    config = fake.last.body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"]["properties"]["summary"] == {"type": "string"}
    assert result.model == "google/gemini-2.5-flash"
    assert by_key(result)["demo_day"].value == "2026-03-10"


# --------------------------------------------------------------------------- no conversation


@pytest.mark.parametrize("outcome", ["voicemail", None])
def test_a_voicemail_asks_no_model_and_repeats_nothing_of_the_greeting(
    serve: Serve, outcome: str | None
) -> None:
    fake = OpenAIFake()
    url = serve(fake)
    ctx = context("openai", "gpt-4o-mini", outcome=outcome, answered_by=None)

    result = run(CONFIG, VOICEMAIL, ctx, openai_env(url))

    assert fake.received == []
    assert result.skipped_extraction_reason == "voicemail"
    assert "Robert" not in result.summary and "Miles" not in result.summary
    assert "voicemail" in result.summary and "left a message" in result.summary
    assert all(item.status == "abstained" for item in result.extracted)
    assert result.success.passed is False


def test_offline_stand_in_runs_the_deterministic_path() -> None:
    result = run(
        CONFIG,
        CONVERSATION,
        context("openai", "gpt-4o-mini"),
        {"TALKTURO_OFFLINE_PROVIDERS": "1"},
    )
    assert (result.method, result.model) == ("offline", None)
    assert result.success.passed is None and "offline" in result.success.reason
    items = by_key(result)
    assert items["email"].value == "jane@example.com" and items["email"].evidence.turn == 1
    assert items["plan"].value == "Pro"
    assert items["demo_day"].value == "2026-03-10"
