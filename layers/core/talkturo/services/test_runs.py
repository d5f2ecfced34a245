"""Assistant test runs: suites kept per assistant, runs queued one message per scenario, each
scenario played as a simulated test call and judged, and the run closed when its last
scenario reports (docs/test-runs.md).

The call itself is the test-call engine's (`services.test_calls.run_test_call`): one blocking
call to the assistant's voice service, which reports what happened. It is looked up when a
scenario runs (`call_runner` replaces it in tests).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Protocol

from talkturo import queues
from talkturo.config import get_settings
from talkturo.domain.analysis import AnalysisResult
from talkturo.domain.assistants import AssistantRecord
from talkturo.domain.common import Page, quantize_credits, utcnow
from talkturo.domain.test_runs import (
    Observed,
    Persona,
    Scenario,
    ScenarioJob,
    ScenarioResult,
    SuiteBody,
    TestRun,
    TestRunCreate,
    TestSuite,
    TestSuiteCreate,
    TestSuiteDeleted,
    TestSuiteUpdate,
    evaluate,
    fingerprint,
    persona_lines,
    persona_prompt,
    persona_script,
)
from talkturo.errors import InsufficientCredits, InvalidRequest, NotFound
from talkturo.ids import has_prefix, new_id
from talkturo.logs import logger
from talkturo.store import test_runs as store

# A suite's scenarios are kept with each run in one item (DynamoDB's limit is 400 KB).
MAX_SUITE_BYTES = 200_000
# 1 credit = 1 minute (SPEC §7): test minutes beyond the free allowance cost the same.
TEST_CREDITS_PER_MINUTE = Decimal(1)
PERSONA_NO_MODEL = "no language model is configured any more to play the persona caller"
PERSONA_NO_LINES = "the language model wrote no caller lines for the persona"


class Observation(Observed, Protocol):
    """The test-call engine's observation, as far as a test run reads it."""

    @property
    def call_id(self) -> str: ...

    @property
    def transferred_to(self) -> str | None: ...

    @property
    def duration_seconds(self) -> int: ...

    @property
    def billed_seconds(self) -> int: ...

    @property
    def recording_available(self) -> bool: ...

    @property
    def error(self) -> str | None: ...


CallRunner = Callable[..., Observation]
AnalysisFinder = Callable[[str, str], AnalysisResult | None]
PersonaWriter = Callable[[AssistantRecord, Persona], str]
# Tests put a fake engine (and a fake analysis lookup, a fake persona writer) here.
call_runner: CallRunner | None = None
analysis_finder: AnalysisFinder | None = None
persona_writer: PersonaWriter | None = None


def _runner() -> CallRunner:
    if call_runner is not None:
        return call_runner
    from talkturo.services.test_calls import run_test_call

    return run_test_call


def _assistant(account_id: str, assistant_id: str) -> AssistantRecord:
    from talkturo.services import assistants

    return assistants.get_record(account_id, assistant_id)


# --------------------------------------------------------------------------- suites


def _check_suite_id(suite_id: str) -> None:
    if not has_prefix(suite_id, "test_suite"):
        raise NotFound("no such test suite", param="suite_id")


def _check_size(suite: SuiteBody, param: str) -> None:
    if len(suite.model_dump_json()) > MAX_SUITE_BYTES:
        raise InvalidRequest(
            f"the suite is larger than {MAX_SUITE_BYTES // 1000} KB; split it", param=param
        )


def create_suite(account_id: str, assistant_id: str, body: TestSuiteCreate) -> TestSuite:
    _assistant(account_id, assistant_id)
    _check_size(body, "scenarios")
    now = utcnow()
    suite = TestSuite(
        id=new_id("test_suite"),
        assistant_id=assistant_id,
        created_at=now,
        updated_at=now,
        **body.model_dump(),
    )
    store.create_suite(account_id, suite)
    return suite


def get_suite(account_id: str, assistant_id: str, suite_id: str) -> TestSuite:
    _assistant(account_id, assistant_id)
    _check_suite_id(suite_id)
    return store.get_suite(account_id, assistant_id, suite_id)


def list_suites(
    account_id: str, assistant_id: str, *, limit: int, starting_after: str | None
) -> Page[TestSuite]:
    _assistant(account_id, assistant_id)
    data, cursor = store.list_suites(
        account_id, assistant_id, limit=limit, starting_after=starting_after
    )
    return Page[TestSuite](data=data, has_more=cursor is not None, next_cursor=cursor)


def update_suite(
    account_id: str, assistant_id: str, suite_id: str, changes: TestSuiteUpdate
) -> TestSuite:
    current = get_suite(account_id, assistant_id, suite_id)
    given = changes.model_dump(exclude_unset=True, exclude_none=True)
    merged = TestSuite.model_validate({**current.model_dump(), **given, "updated_at": utcnow()})
    _check_size(merged, "scenarios")
    store.save_suite(account_id, merged)
    return merged


def delete_suite(account_id: str, assistant_id: str, suite_id: str) -> TestSuiteDeleted:
    _assistant(account_id, assistant_id)
    _check_suite_id(suite_id)
    store.delete_suite(account_id, assistant_id, suite_id)
    return TestSuiteDeleted(id=suite_id)


# --------------------------------------------------------------------------- runs


def model_configured(assistant: AssistantRecord) -> bool:
    """A language model can play a persona: the assistant's provider has a key, or a local
    OpenAI-compatible server is configured."""
    from talkturo.provider_keys import provider_env
    from talkturo.voice.providers.registry import Providers

    env = provider_env()
    return bool(env.get("LOCAL_LLM_BASE_URL")) or bool(Providers(env).key(assistant.llm.provider))


def _check_personas(assistant: AssistantRecord, suite: SuiteBody, param: str) -> None:
    for index, scenario in enumerate(suite.scenarios):
        if scenario.persona is not None and not model_configured(assistant):
            raise InvalidRequest(
                f"scenario {scenario.name!r} has a persona caller, which a language model "
                f"plays: no model is configured (no key for {assistant.llm.provider}); give "
                "the scenario a scripted `caller` instead",
                param=f"{param}.scenarios[{index}].persona",
                code="persona_needs_model",
            )


def _check_contacts(account_id: str, suite: SuiteBody, param: str) -> None:
    from talkturo.services import contacts

    for index, scenario in enumerate(suite.scenarios):
        if scenario.contact_id is None:
            continue
        try:
            contacts.get(account_id, scenario.contact_id)
        except NotFound:
            raise NotFound(
                f"scenario {scenario.name!r}: no such contact",
                param=f"{param}.scenarios[{index}].contact_id",
            ) from None


def _check_allowance(account_id: str) -> None:
    """Beyond today's free test minutes a run is paid in credits: none left, no run (402)."""
    from talkturo.services import credits

    allowance = get_settings().test_minutes_free_per_day * 60
    if seconds_tested_today(account_id) < allowance:
        return
    if credits.balance(account_id).balance <= 0:
        raise InsufficientCredits(
            f"today's {allowance // 60} free test minutes are used and the account has no "
            "credits left; buy credits or test again tomorrow (UTC)"
        )


def create_run(account_id: str, assistant_id: str, request: TestRunCreate) -> TestRun:
    """Queue one message per scenario (202): the workers run them in parallel, bounded."""
    assistant = _assistant(account_id, assistant_id)
    if request.suite_id is not None:
        _check_suite_id(request.suite_id)
        suite: SuiteBody = store.get_suite(account_id, assistant_id, request.suite_id)
        param = "suite_id"
    else:
        assert request.suite is not None
        suite, param = request.suite, "suite"
        _check_size(suite, param)
    _check_personas(assistant, suite, param)
    _check_contacts(account_id, suite, param)
    _check_allowance(account_id)
    url = get_settings().test_run_queue_url
    run = TestRun(
        id=new_id("test_run"),
        assistant_id=assistant_id,
        suite_id=request.suite_id,
        suite_name=suite.name,
        status="queued",
        fingerprint=fingerprint(assistant),
        scenario_count=len(suite.scenarios),
        created_at=utcnow(),
    )
    body = SuiteBody.model_validate(suite.model_dump(include={"name", "description", "scenarios"}))
    store.create_run(account_id, run, body)
    for index in range(len(body.scenarios)):
        queues.send(
            url,
            ScenarioJob(
                account_id=account_id, assistant_id=assistant_id, run_id=run.id, index=index
            ).model_dump(),
        )
    return run


def _check_run_id(run_id: str) -> None:
    if not has_prefix(run_id, "test_run"):
        raise NotFound("no such test run", param="run_id")


def get_run(account_id: str, assistant_id: str, run_id: str) -> TestRun:
    _assistant(account_id, assistant_id)
    _check_run_id(run_id)
    return _shown(store.get_run(account_id, assistant_id, run_id))


def list_runs(
    account_id: str, assistant_id: str, *, limit: int, starting_after: str | None
) -> Page[TestRun]:
    _assistant(account_id, assistant_id)
    data, cursor = store.list_runs(
        account_id, assistant_id, limit=limit, starting_after=starting_after
    )
    return Page[TestRun](data=data, has_more=cursor is not None, next_cursor=cursor)


def _shown(run: TestRun) -> TestRun:
    charged = sum((r.credits_charged for r in run.results), Decimal(0))
    ordered = sorted(run.results, key=lambda r: r.index)
    return run.model_copy(update={"results": ordered, "credits_charged": charged})


# --------------------------------------------------------------------------- the worker


def _run_of(job: ScenarioJob) -> TestRun | None:
    try:
        return store.get_run(job.account_id, job.assistant_id, job.run_id)
    except NotFound:
        return None


def run_scenario(job: ScenarioJob) -> None:
    """Play one scenario and count its verdict in the run (once, whatever the redeliveries)."""
    run = _run_of(job)
    if run is None:
        logger.info("test scenario of a run that is gone", extra={"id": job.run_id})
        return
    suite = store.get_suite_of_run(job.account_id, run.assistant_id, run.id)
    if not 0 <= job.index < len(suite.scenarios):
        return
    scenario = suite.scenarios[job.index]
    started = ScenarioResult(name=scenario.name, index=job.index, status="running")
    if not store.start_scenario(job.account_id, run.assistant_id, run.id, started, job.index):
        return  # reported already
    result = _play(job.account_id, run, scenario, job.index)
    _report(job.account_id, run, job.index, result)


def _play(account_id: str, run: TestRun, scenario: Scenario, index: int) -> ScenarioResult:
    base = ScenarioResult(name=scenario.name, index=index, status="error")
    if scenario.persona is not None:
        assistant = _assistant(account_id, run.assistant_id)
        if persona_writer is None and not model_configured(assistant):
            return base.model_copy(update={"error": PERSONA_NO_MODEL})
        lines = persona_lines(
            (persona_writer or _write_persona)(assistant, scenario.persona),
            scenario.persona.max_turns,
        )
        if not lines:
            return base.model_copy(update={"error": PERSONA_NO_LINES})
        script = persona_script(scenario, lines)
    else:
        script = scenario.script()
    try:
        observation = _runner()(
            account_id,
            run.assistant_id,
            script,
            test_run_id=run.id,
            scenario=scenario.name,
            direction=scenario.direction,
            contact_id=scenario.contact_id,
        )
    except NotFound as gone:  # the assistant or the contact was deleted since: no retry helps
        return base.model_copy(update={"error": gone.message})
    played = base.model_copy(
        update={
            "call_id": observation.call_id,
            "ended_reason": observation.ended_reason,
            "transferred_to": observation.transferred_to,
            "duration_seconds": observation.duration_seconds,
            "billed_seconds": observation.billed_seconds,
            "turn_latencies_ms": list(observation.turn_latencies_ms),
            "recording_available": observation.recording_available,
        }
    )
    if observation.error:
        return played.model_copy(update={"error": observation.error})
    analysis, why = None, ""
    if scenario.expect.needs_analysis() and observation.call_id:
        analysis, why = _analysis(account_id, observation.call_id)
    results = evaluate(scenario, observation, analysis)
    if analysis is None and why:
        results = [
            r.model_copy(update={"detail": f"no analysis of the call: {why}"})
            if r.kind in ("extracted_fields", "success")
            else r
            for r in results
        ]
    status = "passed" if all(r.passed for r in results) else "failed"
    return played.model_copy(update={"status": status, "expectations": results})


def _write_persona(assistant: AssistantRecord, persona: Persona) -> str:
    """The persona's lines, written by the assistant's own model provider (or the local
    OpenAI-compatible server) before the call."""
    import asyncio

    from talkturo.provider_keys import provider_env
    from talkturo.voice.providers.base import ChatMessage, ChatRequest, TextDelta
    from talkturo.voice.providers.registry import Providers

    async def write() -> str:
        model = Providers(provider_env()).language_model(assistant.llm.provider)
        request = ChatRequest(
            model=assistant.llm.model,
            system_prompt=persona_prompt(persona),
            messages=(ChatMessage(role="user", text="Write the caller's lines now."),),
            temperature=0.8,
            max_tokens=800,
        )
        parts = []
        try:
            async for event in model.stream(request):
                if isinstance(event, TextDelta):
                    parts.append(event.text)
        finally:
            close = getattr(model, "aclose", None)
            if close is not None:
                await close()
        return "".join(parts)

    return asyncio.run(write())


def _analysis(account_id: str, call_id: str) -> tuple[AnalysisResult | None, str]:
    """The test call's analysis, made here (test calls get no post-call job; nothing of it is
    written to the CRM), or why there is none: a model that cannot answer leaves it out, and
    the expectations that need it fail, saying so."""
    if analysis_finder is not None:
        return analysis_finder(account_id, call_id), ""
    from talkturo.services import post_call
    from talkturo.voice.providers.base import ProviderError

    try:
        return post_call.analysis_only(account_id, call_id), ""
    except ProviderError as error:
        if error.retryable:
            raise  # the scenario's message comes back later
        logger.warning("test call not analysed", extra={"id": call_id, "why": str(error)})
        return None, str(error)[:300]


def _report(account_id: str, run: TestRun, index: int, result: ScenarioResult) -> None:
    """Meter the scenario's test minutes, count its result, close the run after the last."""
    if result.billed_seconds > 0:
        result = result.model_copy(
            update={"credits_charged": _meter(account_id, run, index, result.billed_seconds)}
        )
    after = store.finish_scenario(account_id, run.assistant_id, run.id, index, result)
    if after is not None and after.completed >= after.scenario_count:
        store.close_run(account_id, after)


def fail_scenario(job: ScenarioJob, reason: str) -> TestRun | None:
    """A scenario whose message dead-lettered: `error` with the reason (counted once)."""
    run = _run_of(job)
    if run is None:
        return None
    suite = store.get_suite_of_run(job.account_id, run.assistant_id, run.id)
    name = suite.scenarios[job.index].name if 0 <= job.index < len(suite.scenarios) else "?"
    result = ScenarioResult(name=name, index=job.index, status="error", error=reason)
    after = store.finish_scenario(job.account_id, run.assistant_id, run.id, job.index, result)
    if after is not None and after.completed >= after.scenario_count:
        store.close_run(job.account_id, after)
    return after


# --------------------------------------------------------------------------- metering


def _meter(account_id: str, run: TestRun, index: int, seconds: int) -> Decimal:
    """Test seconds count against the account's free daily allowance; beyond it they are
    charged as credits (one ledger entry per scenario, keyed: never twice)."""
    from talkturo.services import credits

    allowance = get_settings().test_minutes_free_per_day * 60
    before, after = store.add_test_seconds(account_id, utcnow().date(), seconds)
    beyond = max(0, after - max(allowance, before))
    if beyond == 0:
        return Decimal(0)
    amount = quantize_credits(Decimal(beyond) * TEST_CREDITS_PER_MINUTE / Decimal(60))
    if amount == 0:
        return Decimal(0)
    credits.record(
        account_id,
        "usage",
        -amount,
        idempotency_key=f"test:{run.id}:{index}",
        description=f"test minutes beyond the free {allowance // 60} a day: "
        f"{beyond} s of test run {run.id}",
        reference=run.id,
        allow_negative_balance=True,
    )
    return amount


def seconds_tested_today(account_id: str, day: date | None = None) -> int:
    return store.seconds_tested(account_id, day or utcnow().date())


# --------------------------------------------------------------------------- campaigns


def has_passing_run(account_id: str, assistant: AssistantRecord) -> str | None:
    """The run that passed with the assistant's current configuration, if one did."""
    return store.passed_run(account_id, assistant.id, fingerprint(assistant))
