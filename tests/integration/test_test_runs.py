"""Assistant test runs through the API and the test-run worker, with the test-call engine
replaced by a fake that reports observations (the engine has its own tests)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from talkturo import config
from talkturo.domain.calls import TranscriptMessage, TranscriptToolCall
from talkturo.local.template import Stack
from talkturo.services import credits
from talkturo.services import test_run_play as play
from talkturo.services import test_runs as service
from tests.conftest import Tenant
from tests.fake_carrier import FakeCarrier
from tests.integration import calls_setup
from tests.integration.dead_letter_queue import Redrive
from tests.integration.lambda_worker import SqsWorker

pytestmark = pytest.mark.integration

worker = SqsWorker("test_runs", "TestRunQueue")


@dataclass
class FakeObservation:
    call_id: str
    transcript: list[TranscriptMessage]
    ended_reason: str | None = "assistant_ended"
    transferred_to: str | None = None
    duration_seconds: int = 30
    billed_seconds: int = 30
    turn_latencies_ms: list[int] = field(default_factory=lambda: [600])
    metrics: Any = None
    recording_available: bool = True
    caller: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def _said(*lines: str) -> list[TranscriptMessage]:
    messages = []
    for index, text in enumerate(lines):
        role = "assistant" if index % 2 == 0 else "user"
        messages.append(
            TranscriptMessage(
                role=role, text=text, start_ms=index * 1000, end_ms=index * 1000 + 800
            )  # type: ignore[arg-type]
        )
    return messages


class FakeEngine:
    """Answers each scenario by its first caller line; records every call it was asked for."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail_with: Exception | None = None

    def __call__(self, account_id: str, assistant_id: str, script: Any, **options: Any) -> Any:
        next_line = options.pop("next_line", None)
        if next_line is not None:  # a persona: its first line, answering the greeting
            first = asyncio.run(next_line("Hello, I'm an AI assistant."))
        else:
            first = next(step.text for step in script.steps if step.kind == "say")
        self.calls.append(
            {"account_id": account_id, "assistant_id": assistant_id, "first": first, **options}
        )
        if self.fail_with is not None:
            raise self.fail_with
        transcript = _said("Hello, I'm an AI assistant.", first, "You are booked for Friday.")
        transcript.insert(
            2,
            TranscriptMessage(
                role="assistant",
                start_ms=1900,
                end_ms=1900,
                tool_calls=[TranscriptToolCall(id="t1", name="book", arguments={"day": "Friday"})],
            ),
        )
        return FakeObservation(call_id=f"call_{len(self.calls)}", transcript=transcript)


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEngine]:
    fake = FakeEngine()
    monkeypatch.setattr(play, "call_runner", fake)
    monkeypatch.setattr(play, "analysis_finder", lambda account_id, call_id: None)
    yield fake


def _scenario(name: str, line: str, **expect: Any) -> dict[str, Any]:
    return {"name": name, "caller": [{"say": line}, "hang_up"], "expect": expect}


PASSING = {
    "name": "booking",
    "scenarios": [
        _scenario("books", "Book me for Friday", said=["booked"], tools_called=[{"name": "book"}]),
        _scenario("discloses", "Hi", said=["/\\bAI\\b/"], never_said=["price"]),
    ],
}
FAILING = {
    "name": "strict",
    "scenarios": [
        _scenario("books", "Book me", said=["booked"]),
        _scenario("transfers", "A human please", ended_reason="transferred"),
    ],
}


def _run(client: TestClient, tenant: Tenant, assistant_id: str, body: dict[str, Any]) -> Any:
    answer = client.post(
        f"/v1/assistants/{assistant_id}/test-runs", json=body, headers=tenant.headers
    )
    assert answer.status_code == 202, answer.text
    return answer.json()


def _get(client: TestClient, tenant: Tenant, assistant_id: str, run_id: str) -> Any:
    answer = client.get(f"/v1/assistants/{assistant_id}/test-runs/{run_id}", headers=tenant.headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_suites_are_kept_per_assistant_and_invisible_to_others(
    client: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    assistant_id = calls_setup.assistant(client, tenant)
    base = f"/v1/assistants/{assistant_id}/test-suites"
    made = client.post(base, json=PASSING, headers=tenant.headers)
    assert made.status_code == 201, made.text
    suite_id = made.json()["id"]
    listed = client.get(base, headers=tenant.headers).json()
    assert [s["id"] for s in listed["data"]] == [suite_id]
    patched = client.patch(f"{base}/{suite_id}", json={"name": "renamed"}, headers=tenant.headers)
    assert patched.json()["name"] == "renamed" and len(patched.json()["scenarios"]) == 2
    # Another account sees neither the assistant's suites nor the suite
    assert client.get(base, headers=other_tenant.headers).status_code == 404
    assert client.get(f"{base}/{suite_id}", headers=other_tenant.headers).status_code == 404
    deleted = client.delete(f"{base}/{suite_id}", headers=tenant.headers)
    assert deleted.json() == {"object": "test_suite", "id": suite_id, "deleted": True}
    assert client.get(f"{base}/{suite_id}", headers=tenant.headers).status_code == 404


def test_a_bad_suite_is_refused_naming_the_field(client: TestClient, tenant: Tenant) -> None:
    assistant_id = calls_setup.assistant(client, tenant)
    bad = {"name": "x", "scenarios": [_scenario("a", "hi", said=["/(/"])]}
    answer = client.post(
        f"/v1/assistants/{assistant_id}/test-runs", json={"suite": bad}, headers=tenant.headers
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["param"] == "suite.scenarios[0].expect.said"


def test_a_persona_without_a_model_is_refused(
    client: TestClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOCAL_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assistant_id = calls_setup.assistant(client, tenant)
    suite = {"name": "x", "scenarios": [{"name": "p", "persona": {"goal": "book a table"}}]}
    answer = client.post(
        f"/v1/assistants/{assistant_id}/test-runs", json={"suite": suite}, headers=tenant.headers
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert (error["code"], error["param"]) == ("persona_needs_model", "suite.scenarios[0].persona")


def test_a_passing_run_counts_each_scenario_once_and_records_the_configuration(
    client: TestClient, tenant: Tenant, stack: Stack, engine: FakeEngine
) -> None:
    # Given a stored suite whose expectations the assistant meets
    assistant_id = calls_setup.assistant(client, tenant)
    suite = client.post(
        f"/v1/assistants/{assistant_id}/test-suites", json=PASSING, headers=tenant.headers
    ).json()
    # When it runs: one message per scenario, each delivered twice
    run = _run(client, tenant, assistant_id, {"suite_id": suite["id"]})
    assert (run["status"], run["scenario_count"], run["completed"]) == ("queued", 2, 0)
    bodies = [body for body, _ in worker.receive(stack)]
    assert sorted(json.loads(b)["index"] for b in bodies) == [0, 1]
    for body in bodies + bodies:
        assert worker.invoke(stack, [body]) == {"batchItemFailures": []}
    # Then the run passed, each scenario counted once, called once
    done = _get(client, tenant, assistant_id, run["id"])
    assert (done["status"], done["completed"], done["passed"]) == ("passed", 2, 2)
    assert len(engine.calls) == 2 and engine.calls[0]["test_run_id"] == run["id"]
    first = done["results"][0]
    assert first["name"] == "books" and first["call_id"].startswith("call_")
    kinds = [(e["kind"], e["passed"]) for e in first["expectations"]]
    assert kinds == [("tools_called", True), ("said", True)]
    assert first["expectations"][1]["lines"][0]["text"] == "You are booked for Friday."
    assert done["test_seconds"] == 60 and done["fingerprint"].startswith("sha256:")
    # And the passing configuration is known (the gate of require_passing_tests)
    record = calls_setup_record(tenant, assistant_id)
    assert service.has_passing_run(tenant.account_id, record) == run["id"]
    listed = client.get(f"/v1/assistants/{assistant_id}/test-runs", headers=tenant.headers)
    assert [r["id"] for r in listed.json()["data"]] == [run["id"]]


def calls_setup_record(tenant: Tenant, assistant_id: str) -> Any:
    from talkturo.services import assistants

    return assistants.get_record(tenant.account_id, assistant_id)


def test_a_failing_run_names_the_expectation_that_failed(
    client: TestClient, tenant: Tenant, stack: Stack, engine: FakeEngine
) -> None:
    assistant_id = calls_setup.assistant(client, tenant)
    run = _run(client, tenant, assistant_id, {"suite": FAILING})
    worker.deliver_waiting(stack, strict=True)
    done = _get(client, tenant, assistant_id, run["id"])
    assert (done["status"], done["passed"], done["failed"]) == ("failed", 1, 1)
    (failed,) = [r for r in done["results"] if r["status"] == "failed"]
    (expectation,) = failed["expectations"]
    assert expectation["kind"] == "ended_reason" and expectation["actual"] == "assistant_ended"
    record = calls_setup_record(tenant, assistant_id)
    assert service.has_passing_run(tenant.account_id, record) is None


def test_a_run_of_another_account_is_not_found(
    client: TestClient, tenant: Tenant, other_tenant: Tenant, engine: FakeEngine
) -> None:
    assistant_id = calls_setup.assistant(client, tenant)
    run = _run(client, tenant, assistant_id, {"suite": PASSING})
    path = f"/v1/assistants/{assistant_id}/test-runs/{run['id']}"
    assert client.get(path, headers=other_tenant.headers).status_code == 404
    answer = client.post(
        f"/v1/assistants/{assistant_id}/test-runs",
        json={"suite": PASSING},
        headers=other_tenant.headers,
    )
    assert answer.status_code == 404


def test_a_scenario_that_keeps_failing_ends_the_run_in_error(
    client: TestClient, tenant: Tenant, stack: Stack, engine: FakeEngine
) -> None:
    # Given a run whose engine cannot place one scenario's call, every time
    assistant_id = calls_setup.assistant(client, tenant)
    run = _run(
        client, tenant, assistant_id, {"suite": {**PASSING, "scenarios": PASSING["scenarios"][:1]}}
    )
    engine.fail_with = RuntimeError("the voice service is unreachable")
    redrive = Redrive(stack)
    # When its message is retried until it is a dead letter, and the dead-letter worker takes it
    redrive.exhaust("TestRunQueue")
    assert redrive.handle_dead_letters("TestRunQueue") == 1
    # Then the scenario and the run say error, with the reason
    done = _get(client, tenant, assistant_id, run["id"])
    assert (done["status"], done["errored"]) == ("error", 1)
    assert "could not be played" in done["results"][0]["error"]


def test_test_minutes_beyond_the_daily_allowance_are_charged_on_the_ledger(
    client: TestClient,
    tenant: Tenant,
    stack: Stack,
    engine: FakeEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a free allowance of one test minute a day, and two 30 s + 60 s of scenarios
    monkeypatch.setenv("TALKTURO_TEST_MINUTES_FREE_PER_DAY", "1")
    config.get_settings.cache_clear()
    before = credits.balance(tenant.account_id).balance
    assistant_id = calls_setup.assistant(client, tenant)
    _run(client, tenant, assistant_id, {"suite": PASSING})
    worker.deliver_waiting(stack, strict=True)
    run = _run(client, tenant, assistant_id, {"suite": PASSING})
    worker.deliver_waiting(stack, strict=True)
    # Then the first minute was free and the second charged, a credit a minute
    done = _get(client, tenant, assistant_id, run["id"])
    assert Decimal(done["credits_charged"]) == Decimal("1.0000")
    assert credits.balance(tenant.account_id).balance == before - 1
    entries = client.get("/v1/credits/ledger", headers=tenant.headers).json()["data"]
    charged = [e for e in entries if e["reference"] == run["id"]]
    assert len(charged) == 2 and all("test minutes" in e["description"] for e in charged)
    # And with the allowance used and no credits left, no further run
    balance = credits.balance(tenant.account_id).balance
    credits.record(tenant.account_id, "adjustment", -balance, idempotency_key="empty it")
    refused = client.post(
        f"/v1/assistants/{assistant_id}/test-runs", json={"suite": PASSING}, headers=tenant.headers
    )
    assert refused.status_code == 402, refused.text


# --------------------------------------------------------------------------- campaign gating


def test_a_campaign_that_requires_passing_tests_starts_only_after_a_run_of_this_configuration(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    carrier: FakeCarrier,
    engine: FakeEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.integration.test_campaigns import action, contacts, create, pump, read

    monkeypatch.setenv("TALKTURO_DIAL_CALLS_PER_SECOND", "100")
    config.get_settings.cache_clear()
    line = calls_setup.line(client, stack, tenant, "+14155550140")
    contacts(client, tenant, 2)
    first = create(client, tenant, line.assistant_id, require_passing_tests=True)
    second = create(client, tenant, line.assistant_id, require_passing_tests=True)
    assert first["require_passing_tests"] is True
    pump(stack)
    # Without a passing run: refused, naming why
    refused = action(client, tenant, first["id"], "start")
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["param"]) == ("passing_tests_required", "require_passing_tests")
    # A failing run does not open the gate; a passing one does
    _run(client, tenant, line.assistant_id, {"suite": FAILING})
    worker.deliver_waiting(stack, strict=True)
    assert action(client, tenant, first["id"], "start").status_code == 409
    _run(client, tenant, line.assistant_id, {"suite": PASSING})
    worker.deliver_waiting(stack, strict=True)
    started = action(client, tenant, first["id"], "start")
    assert started.status_code == 200 and started.json()["status"] == "running"
    # Changing the assistant's behaviour asks for a new passing run
    changed = client.patch(
        f"/v1/assistants/{line.assistant_id}",
        json={"system_prompt": "You are a different assistant now."},
        headers=tenant.headers,
    )
    assert changed.status_code == 200, changed.text
    again = action(client, tenant, second["id"], "start")
    assert again.status_code == 409 and read(client, tenant, second["id"])["status"] == "draft"


def test_a_scheduled_start_waits_while_the_assistant_changed_since_its_passing_run(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    carrier: FakeCarrier,
    engine: FakeEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import timedelta

    from talkturo.domain.common import utcnow
    from talkturo.services import campaigns
    from tests.integration.test_campaigns import action, contacts, create, pump, read

    line = calls_setup.line(client, stack, tenant, "+14155550140")
    contacts(client, tenant, 1)
    at = utcnow() + timedelta(hours=2)
    made = create(
        client,
        tenant,
        line.assistant_id,
        require_passing_tests=True,
        scheduled_start_at=at.isoformat(),
    )
    pump(stack)
    _run(client, tenant, line.assistant_id, {"suite": PASSING})
    worker.deliver_waiting(stack, strict=True)
    assert action(client, tenant, made["id"], "start").json()["status"] == "scheduled"
    # The assistant changes before the start time comes
    client.patch(
        f"/v1/assistants/{line.assistant_id}",
        json={"first_message": "Hello there, a new greeting."},
        headers=tenant.headers,
    )
    monkeypatch.setattr(campaigns, "utcnow", lambda: at + timedelta(seconds=1))
    campaigns.tick(at + timedelta(seconds=1))
    pump(stack)
    held = read(client, tenant, made["id"])
    assert held["status"] == "scheduled" and "passing test run" in held["status_reason"]
    assert carrier.placed == []


def test_a_persona_caller_answers_what_the_assistant_said(
    client: TestClient,
    tenant: Tenant,
    stack: Stack,
    engine: FakeEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a model for the assistant's provider, which writes the persona's lines
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")
    asked: list[Any] = []

    async def writer(assistant: Any, prompt: str, turns: list[Any]) -> str:
        asked.append((prompt, turns))
        return "Caller: I want to book for Friday"

    monkeypatch.setattr(play, "persona_writer", writer)
    assistant_id = calls_setup.assistant(client, tenant)
    suite = {
        "name": "personas",
        "scenarios": [
            {"name": "p", "persona": {"goal": "book for Friday"}, "expect": {"said": ["booked"]}}
        ],
    }
    run = _run(client, tenant, assistant_id, {"suite": suite})
    worker.deliver_waiting(stack, strict=True)
    done = _get(client, tenant, assistant_id, run["id"])
    assert done["status"] == "passed"
    ((prompt, turns),) = asked
    assert "book for Friday" in prompt and turns == [("user", "Hello, I'm an AI assistant.")]
    assert engine.calls[0]["scenario"] == "p"
    assert engine.calls[0]["first"] == "I want to book for Friday"  # the speaker's name dropped


def test_scenarios_run_side_by_side_at_most_four_at_once(
    client: TestClient, tenant: Tenant, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from talkturo.local.runner import SqsRunner

    # Given an engine whose calls last until the test lets them end
    gate = threading.Condition()
    release = threading.Event()
    active = peak = 0

    def blocking(account_id: str, assistant_id: str, script: Any, **options: Any) -> Any:
        nonlocal active, peak
        with gate:
            active += 1
            peak = max(peak, active)
            gate.notify_all()
        release.wait(timeout=60)
        with gate:
            active -= 1
        return FakeObservation(call_id="call_x", transcript=_said("Hello."))

    monkeypatch.setattr(play, "call_runner", blocking)
    assistant_id = calls_setup.assistant(client, tenant)
    scenarios = [_scenario(f"s{i}", "Hi", ended_reason="assistant_ended") for i in range(6)]
    run = _run(client, tenant, assistant_id, {"suite": {"name": "six", "scenarios": scenarios}})
    # When the local runner works the queue as Lambda's poller would
    runner = SqsRunner(stack)
    runner.start()
    try:
        with gate:
            assert gate.wait_for(lambda: active == 4, timeout=60), f"{active} calls at once"
        release.set()
        done = {}
        for _ in range(600):  # the last reports arrive in a moment: wait on the run's status
            done = _get(client, tenant, assistant_id, run["id"])
            if done["status"] == "passed":
                break
            release.wait(0.1)
    finally:
        release.set()
        runner.stop()
    # Then four ran side by side, never more (the event source's MaximumConcurrency)
    assert peak == 4
    assert (done["status"], done["passed"]) == ("passed", 6)


def test_a_scenario_whose_contact_is_gone_ends_in_error_at_once(
    client: TestClient, tenant: Tenant, stack: Stack, engine: FakeEngine
) -> None:
    from talkturo.errors import NotFound

    assistant_id = calls_setup.assistant(client, tenant)
    one = {**PASSING, "scenarios": PASSING["scenarios"][:1]}
    run = _run(client, tenant, assistant_id, {"suite": one})
    engine.fail_with = NotFound("no such contact", param="contact_id")
    worker.deliver_waiting(stack, strict=True)  # handled: not delivered again
    done = _get(client, tenant, assistant_id, run["id"])
    assert (done["status"], done["results"][0]["error"]) == ("error", "no such contact")
