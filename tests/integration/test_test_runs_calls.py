"""Test runs with the real test-call engine: each scenario a simulated call to a voice service
started in-process (the development model, a scripted transcriber, the tone voice; see
test_test_calls), judged as a user's suite would be."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from talkturo.local.template import Stack
from talkturo.services import test_run_play as play
from talkturo.voice.providers.base import ProviderError, TranscriberOptions
from talkturo.voice.providers.scripted import ScriptedTranscriber, ToneVoice
from tests.conftest import Tenant
from tests.integration.lambda_worker import SqsWorker
from tests.integration.test_test_calls import TRANSFER, Voice, voice  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration

worker = SqsWorker("test_runs", "TestRunQueue")


def _assistant(client: TestClient, tenant: Tenant, **changes: Any) -> str:
    made = client.post(
        "/v1/assistants", json={"template": "custom", **changes}, headers=tenant.headers
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def _played(client: TestClient, tenant: Tenant, stack: Stack, assistant_id: str, suite: Any) -> Any:
    base = f"/v1/assistants/{assistant_id}/test-runs"
    run = client.post(base, json={"suite": suite}, headers=tenant.headers)
    assert run.status_code == 202, run.text
    worker.deliver_waiting(stack, strict=True)
    return client.get(f"{base}/{run.json()['id']}", headers=tenant.headers).json()


def test_a_scenario_that_must_end_in_a_transfer(
    client: TestClient,
    tenant: Tenant,
    stack: Stack,
    voice: Voice,  # noqa: F811
) -> None:
    assistant_id = _assistant(client, tenant, first_message="Hi, this is Ada.", tools=[TRANSFER])
    voice.lines = ["Can I talk to a real person"]
    steps = [
        {"wait_for_silence": 0.5},
        {"say": "Can I talk to a real person"},
        {"wait_seconds": 30},
    ]
    suite = {
        "name": "handoff",
        "scenarios": [
            {
                "name": "asks for a person",
                "caller": {"tts": "synthetic", "steps": steps},
                "expect": {
                    "tools_called": [{"name": "transfer_call"}],
                    "ended_reason": "transferred",
                    "said": ["this is Ada"],
                },
            }
        ],
    }
    run = _played(client, tenant, stack, assistant_id, suite)
    assert run["status"] == "passed", run
    (result,) = run["results"]
    assert result["transferred_to"] == "Sales" and result["billed_seconds"] >= 0
    (called,) = [e for e in result["expectations"] if e["kind"] == "tools_called"]
    assert "transfer_call" in called["lines"][0]["text"]


def test_a_caller_who_barges_in_and_a_latency_limit_the_assistant_misses(
    client: TestClient,
    tenant: Tenant,
    stack: Stack,
    voice: Voice,  # noqa: F811
) -> None:
    assistant_id = _assistant(client, tenant, first_message="Hi.")
    voice.lines = ["Tell me about your opening hours and menus", "Wait stop"]
    steps = [
        {"wait_for_silence": 0.5},
        {"say": "Tell me about your opening hours and menus"},
        {"interrupt": {"text": "Wait stop", "timeout": 10}},
        {"wait_for_silence": 0.5},
        "hang_up",
    ]
    suite = {
        "name": "barge-in",
        "scenarios": [
            {
                "name": "talks over the answer",
                "caller": {"tts": "synthetic", "steps": steps},
                "expect": {
                    "ended_reason": "caller_hung_up",
                    "max_turn_latency_ms": 1,  # no reply is that fast: this one fails
                    "success": True,
                },
            }
        ],
    }
    run = _played(client, tenant, stack, assistant_id, suite)
    assert run["status"] == "failed", run
    verdicts = {e["kind"]: e for e in run["results"][0]["expectations"]}
    assert verdicts["ended_reason"]["passed"]
    latency = verdicts["max_turn_latency_ms"]
    assert not latency["passed"] and latency["actual"] > 1
    # No model could analyse the call (no key here, stand-ins not allowed): the verdict says so
    assert not verdicts["success"]["passed"]
    assert "no analysis of the call: openai: no API key" in verdicts["success"]["detail"]


def test_success_and_extracted_fields_are_judged_on_an_analysis_of_the_test_call(
    client: TestClient,
    tenant: Tenant,
    stack: Stack,
    voice: Voice,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the offline analysis (no model key, stand-ins allowed) and an extraction field
    monkeypatch.setenv("TALKTURO_OFFLINE_PROVIDERS", "1")
    assistant_id = _assistant(client, tenant, first_message="Hi, what is your email?")
    patched = client.patch(
        f"/v1/assistants/{assistant_id}",
        json={"analysis": {"extraction_fields": [{"key": "email", "description": "Their email."}]}},
        headers=tenant.headers,
    )
    assert patched.status_code == 200, patched.text
    voice.lines = ["My email is jane@example.com", "Thanks goodbye"]
    steps = [
        {"wait_for_silence": 0.5},
        {"say": "My email is jane@example.com"},
        {"wait_for_silence": 0.5},
        {"say": "Thanks goodbye"},
        {"wait_seconds": 30},
    ]
    suite = {
        "name": "extraction",
        "scenarios": [
            {
                "name": "gives an email",
                "caller": {"tts": "synthetic", "steps": steps},
                "expect": {"extracted_fields": {"email": "jane@example.com"}, "success": True},
            }
        ],
    }
    run = _played(client, tenant, stack, assistant_id, suite)
    verdicts = {e["kind"]: e for e in run["results"][0]["expectations"]}
    email = verdicts["extracted_fields"]
    assert email["passed"], email
    assert "jane@example.com" in email["lines"][0]["text"] and email["lines"][0]["role"] == "user"
    assert not verdicts["success"]["detail"].startswith("no analysis"), verdicts["success"]
    # Nothing of it was written to the CRM: the test call has no contact, and none was made
    assert client.get("/v1/contacts", headers=tenant.headers).json()["data"] == []


def _persona_hears(monkeypatch: pytest.MonkeyPatch, *lines: str) -> ScriptedTranscriber:
    """A model key for the persona, the caller's ear a transcriber that writes `lines`, one an
    utterance heard, and its voice the tone voice; the ear is returned."""
    from talkturo.simcaller import voice as caller

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")
    ear = ScriptedTranscriber(lines=list(lines), final_delay=0.1, default_line="")
    options = TranscriberOptions(model="m", language="en")
    monkeypatch.setattr(caller, "caller_ear", lambda assistant, env=None: (ear, options))
    monkeypatch.setattr(caller, "caller_voice", lambda assistant, env=None: ToneVoice())
    return ear


def test_a_persona_caller_answers_what_it_heard_the_assistant_say(
    client: TestClient,
    tenant: Tenant,
    stack: Stack,
    voice: Voice,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a model for the persona (a fake that answers by what the caller heard), the
    # caller's ear a transcriber that writes what it hears, utterance by utterance
    ear = _persona_hears(monkeypatch, "Hi this is Ada", "Which day would you like")
    asked: list[list[Any]] = []

    async def persona(assistant: Any, prompt: str, turns: list[Any]) -> str:
        asked.append(turns)
        heard = turns[-1][1]
        if "Ada" in heard:
            return "I want to book a table"
        if "which day" in heard.lower():
            return "Friday please [hang up]"
        return "Hello, is anyone there?"

    monkeypatch.setattr(play, "persona_writer", persona)
    voice.lines = ["I want to book a table", "Friday please"]
    assistant_id = _assistant(client, tenant, first_message="Hi, this is Ada.")
    scenario = {
        "name": "books a table",
        "persona": {"goal": "book a table for Friday", "max_turns": 4},
        "expect": {"said": ["this is Ada"], "ended_reason": "caller_hung_up"},
    }
    run = _played(client, tenant, stack, assistant_id, {"name": "p", "scenarios": [scenario]})
    assert run["status"] == "passed", (run["results"], asked)
    # Each line was written from the assistant's words the caller heard, transcribed: the
    # greeting first, the assistant's answer to the first line next; then the caller hung up
    assert [turns[-1] for turns in asked] == [
        ("user", "Hi this is Ada"),
        ("user", "Which day would you like"),
    ]
    assert asked[1][:2] == [("user", "Hi this is Ada"), ("assistant", "I want to book a table")]
    assert ear.opened == 2  # one transcription per line written; the last answer only heard
    (call,) = voice.contexts
    assert call.call.scenario == "books a table"


def test_a_persona_whose_model_fails_ends_the_scenario_in_error_saying_why(
    client: TestClient,
    tenant: Tenant,
    stack: Stack,
    voice: Voice,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _persona_hears(monkeypatch, "Hi")

    async def persona(assistant: Any, prompt: str, turns: list[Any]) -> str:
        raise ProviderError("openai", "rate limited")

    monkeypatch.setattr(play, "persona_writer", persona)
    assistant_id = _assistant(client, tenant, first_message="Hi.")
    scenario = {"name": "p", "persona": {"goal": "book"}, "expect": {"said": ["Hi"]}}
    run = _played(client, tenant, stack, assistant_id, {"name": "p", "scenarios": [scenario]})
    (result,) = run["results"]
    assert result["status"] == "error", result
    assert result["error"].startswith("the persona caller's next line failed:"), result
    assert "rate limited" in result["error"]
