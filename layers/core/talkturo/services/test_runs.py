"""Assistant test runs: suites kept per assistant, runs queued one message per scenario, each
scenario played as a simulated test call and judged, and the run closed when its last
scenario reports (docs/test-runs.md).

Playing a scenario (the simulated call, judging it) is `services.test_run_play`, which only the
test-run worker imports: it reaches the providers' SDKs, which the API's layer leaves out.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from talkturo import queues
from talkturo.config import get_settings
from talkturo.domain.assistants import AssistantRecord
from talkturo.domain.common import Page, quantize_credits, utcnow
from talkturo.domain.test_runs import (
    ScenarioJob,
    ScenarioResult,
    SuiteBody,
    TestRun,
    TestRunCreate,
    TestSuite,
    TestSuiteCreate,
    TestSuiteDeleted,
    TestSuiteUpdate,
    fingerprint,
)
from talkturo.errors import InsufficientCredits, InvalidRequest, NotFound
from talkturo.ids import has_prefix, new_id
from talkturo.store import test_runs as store

# A suite's scenarios are kept with each run in one item (DynamoDB's limit is 400 KB).
MAX_SUITE_BYTES = 200_000
# 1 credit = 1 minute (SPEC §7): test minutes beyond the free allowance cost the same.
TEST_CREDITS_PER_MINUTE = Decimal(1)


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
    # Not through the voice providers' registry: the API's layer leaves the voice package out.
    from talkturo.provider_keys import provider_env, provider_key

    env = provider_env()
    return bool(env.get("LOCAL_LLM_BASE_URL")) or bool(provider_key(env, assistant.llm.provider))


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
