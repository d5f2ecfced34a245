"""One scenario of an assistant test run played and judged: the test-run worker's part of
test runs (services.test_runs holds the suites, the runs and their counting).

Apart from the rest because it reaches the providers' SDKs (the persona's lines written turn by
turn by the assistant's model, the judging analysis, the simulated caller's voice and ear): only
the test-run worker, an image function with the `voice` extra, imports it; the API and the zip
functions, whose layer leaves the voice package out, never do.

The call itself is the test-call engine's (`services.test_calls.run_test_call`): one blocking
call to the assistant's voice service, which reports what happened. It is looked up when a
scenario runs (`call_runner` replaces it in tests).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

from talkturo.domain.analysis import AnalysisResult
from talkturo.domain.assistants import AssistantRecord
from talkturo.domain.test_runs import (
    Observed,
    Persona,
    PersonaTurns,
    Scenario,
    ScenarioJob,
    ScenarioResult,
    TestRun,
    evaluate,
    persona_prompt,
    persona_script,
)
from talkturo.errors import NotFound
from talkturo.logs import logger
from talkturo.services import test_runs
from talkturo.store import test_runs as store

PERSONA_NO_MODEL = "no language model is configured any more to play the persona caller"


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
Turn = tuple[Literal["user", "assistant"], str]
# The persona's next reply: (assistant, system prompt, the conversation so far) -> the text.
PersonaWriter = Callable[[AssistantRecord, str, list[Turn]], Awaitable[str]]
# Tests put a fake engine (and a fake analysis lookup, a fake persona model) here.
call_runner: CallRunner | None = None
analysis_finder: AnalysisFinder | None = None
persona_writer: PersonaWriter | None = None


def _runner() -> CallRunner:
    if call_runner is not None:
        return call_runner
    from talkturo.services.test_calls import run_test_call

    return run_test_call


def run_scenario(job: ScenarioJob) -> None:
    """Play one scenario and count its verdict in the run (once, whatever the redeliveries)."""
    run = test_runs._run_of(job)
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
    test_runs._report(job.account_id, run, job.index, result)


def _play(account_id: str, run: TestRun, scenario: Scenario, index: int) -> ScenarioResult:
    base = ScenarioResult(name=scenario.name, index=index, status="error")
    next_line = None
    if scenario.persona is not None:
        assistant = test_runs._assistant(account_id, run.assistant_id)
        if persona_writer is None and not test_runs.model_configured(assistant):
            return base.model_copy(update={"error": PERSONA_NO_MODEL})
        script = persona_script(scenario.name, scenario.persona)
        next_line = _persona_caller(assistant, scenario.persona)
    else:
        script = scenario.script()
    options = {} if next_line is None else {"next_line": next_line}
    try:
        observation = _runner()(
            account_id,
            run.assistant_id,
            script,
            test_run_id=run.id,
            scenario=scenario.name,
            direction=scenario.direction,
            contact_id=scenario.contact_id,
            **options,
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


def _persona_caller(
    assistant: AssistantRecord, persona: Persona
) -> Callable[[str], Awaitable[str | None]]:
    """The persona's `next_line`: one model request per caller turn, from the conversation so
    far (what the assistant said, as the caller's transcriber heard it); None hangs up."""
    turns = PersonaTurns(persona)
    write = persona_writer or _write_persona
    prompt = persona_prompt(persona)

    async def next_line(heard: str) -> str | None:
        if not turns.hear(heard):
            return None
        return turns.answer(await write(assistant, prompt, list(turns.messages)))

    return next_line


async def _write_persona(assistant: AssistantRecord, prompt: str, turns: list[Turn]) -> str:
    """The persona's next reply, by the assistant's own model provider (or the local
    OpenAI-compatible server)."""
    from talkturo.provider_keys import provider_env
    from talkturo.voice.providers.base import ChatMessage, ChatRequest, TextDelta
    from talkturo.voice.providers.registry import Providers

    model = Providers(provider_env()).language_model(assistant.llm.provider)
    request = ChatRequest(
        model=assistant.llm.model,
        system_prompt=prompt,
        messages=tuple(ChatMessage(role=role, text=text) for role, text in turns),
        temperature=0.8,
        max_tokens=200,
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
