"""Test suites and test runs of assistants (docs/data-model.md, "Assistant test runs").

Items:
- Suite     PK=A#<acct> SK=TSUITE#<asst id>#<suite id>: the TestSuite document (versioned).
- Run       PK=A#<acct> SK=TRUN#<asst id>#<run id>: the TestRun document (without results),
  the suite it runs (`suite`, JSON), its `status`, and counters `completed`, `passed`,
  `failed`, `errored`, `test_seconds` that each scenario adds to atomically (`ADD`).
- Scenario  PK=A#<acct>#TRUN#<run id> SK=<index, 3 digits>: the ScenarioResult; its final
  write is conditional on the item not being final yet, and only that write counts in the
  run, so a scenario's message delivered twice never counts twice.
- Verified  PK=A#<acct> SK=TVERIFIED#<asst id>#<fingerprint>: the last run that passed with that
  configuration (a campaign's `require_passing_tests` reads it).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DeleteError, DoesNotExist, PutError, UpdateError

from talkturo.domain.common import utcnow
from talkturo.domain.test_runs import (
    FINAL,
    ScenarioResult,
    SuiteBody,
    TestRun,
    TestSuite,
    run_status,
)
from talkturo.errors import NotFound
from talkturo.store import keys
from talkturo.store.paging import query_page
from talkturo.store.table import Document, Item, connection

SUITE_PREFIX = "TSUITE#"
RUN_PREFIX = "TRUN#"
VERIFIED_PREFIX = "TVERIFIED#"
DAY_PREFIX = "TESTDAY#"
# A day's counter outlives the day by a while (TTL), for the ledger's descriptions to be read.
DAY_TTL_SECONDS = 40 * 86_400


class SuiteItem(Document):
    """PK=A#<acct> SK=TSUITE#<asst id>#<suite id>."""


class RunItem(Item):
    """PK=A#<acct> SK=TRUN#<asst id>#<run id>. Not versioned: the document is written once,
    then only `status` and the counters change, each by its own update expression."""

    doc = UnicodeAttribute()
    suite = UnicodeAttribute()
    status = UnicodeAttribute()
    completed_at = UnicodeAttribute(null=True)
    completed = NumberAttribute(default=0)
    passed = NumberAttribute(default=0)
    failed = NumberAttribute(default=0)
    errored = NumberAttribute(default=0)
    test_seconds = NumberAttribute(default=0)


class ScenarioItem(Item):
    """PK=A#<acct>#TRUN#<run id> SK=<index, 3 digits>."""

    doc = UnicodeAttribute()
    status = UnicodeAttribute()


class TestDayItem(Item):
    """PK=A#<acct> SK=TESTDAY#<yyyy-mm-dd>: the test seconds the account ran that UTC day."""

    __test__ = False  # not a pytest class
    seconds = NumberAttribute(default=0)


class VerifiedItem(Item):
    """PK=A#<acct> SK=TVERIFIED#<asst id>#<fingerprint>."""

    run_id = UnicodeAttribute()
    passed_at = UnicodeAttribute()


def _conditional_failed(error: Exception) -> bool:
    return getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException"


# --------------------------------------------------------------------------- suites


def _suite_sk(assistant_id: str, suite_id: str) -> str:
    return f"{SUITE_PREFIX}{assistant_id}#{suite_id}"


def create_suite(account_id: str, suite: TestSuite) -> None:
    connection()
    SuiteItem(
        keys.account(account_id),
        _suite_sk(suite.assistant_id, suite.id),
        doc=suite.model_dump_json(),
    ).save(condition=SuiteItem.pk.does_not_exist())


def _suite_item(account_id: str, assistant_id: str, suite_id: str) -> SuiteItem:
    connection()
    try:
        return SuiteItem.get(
            keys.account(account_id), _suite_sk(assistant_id, suite_id), consistent_read=True
        )
    except DoesNotExist:
        raise NotFound("no such test suite", param="suite_id") from None


def get_suite(account_id: str, assistant_id: str, suite_id: str) -> TestSuite:
    return TestSuite.model_validate_json(_suite_item(account_id, assistant_id, suite_id).doc)


def save_suite(account_id: str, suite: TestSuite) -> None:
    """Rewrite the suite; the version read guards against a concurrent change."""
    item = _suite_item(account_id, suite.assistant_id, suite.id)
    item.doc = suite.model_dump_json()
    item.save()


def delete_suite(account_id: str, assistant_id: str, suite_id: str) -> None:
    connection()
    try:
        SuiteItem(keys.account(account_id), _suite_sk(assistant_id, suite_id)).delete(
            condition=SuiteItem.pk.exists(), add_version_condition=False
        )
    except DeleteError as error:
        if _conditional_failed(error):
            raise NotFound("no such test suite", param="suite_id") from None
        raise


def list_suites(
    account_id: str, assistant_id: str, *, limit: int, starting_after: str | None
) -> tuple[list[TestSuite], str | None]:
    return query_page(
        SuiteItem,
        keys.account(account_id),
        convert=lambda item: TestSuite.model_validate_json(item.doc),
        limit=limit,
        starting_after=starting_after,
        range_key_condition=SuiteItem.sk.startswith(f"{SUITE_PREFIX}{assistant_id}#"),
    )


# --------------------------------------------------------------------------- runs


def _run_sk(assistant_id: str, run_id: str) -> str:
    return f"{RUN_PREFIX}{assistant_id}#{run_id}"


def _scenario_pk(account_id: str, run_id: str) -> str:
    return keys.account_scoped(account_id, RUN_PREFIX.rstrip("#"), run_id)


def _summary_of(item: RunItem) -> TestRun:
    run = TestRun.model_validate_json(item.doc)
    return run.model_copy(
        update={
            "status": item.status,
            "completed": int(item.completed),
            "passed": int(item.passed),
            "failed": int(item.failed),
            "errored": int(item.errored),
            "test_seconds": int(item.test_seconds),
            "completed_at": datetime.fromisoformat(item.completed_at)
            if item.completed_at
            else None,
        }
    )


def create_run(account_id: str, run: TestRun, suite: SuiteBody) -> None:
    connection()
    RunItem(
        keys.account(account_id),
        _run_sk(run.assistant_id, run.id),
        doc=run.model_dump_json(exclude={"results"}),
        suite=suite.model_dump_json(),
        status=run.status,
    ).save(condition=RunItem.pk.does_not_exist())


def _run_item(account_id: str, assistant_id: str, run_id: str) -> RunItem:
    connection()
    try:
        return RunItem.get(
            keys.account(account_id), _run_sk(assistant_id, run_id), consistent_read=True
        )
    except DoesNotExist:
        raise NotFound("no such test run", param="run_id") from None


def results(account_id: str, run_id: str) -> list[ScenarioResult]:
    connection()
    return [
        ScenarioResult.model_validate_json(item.doc)
        for item in ScenarioItem.query(_scenario_pk(account_id, run_id), consistent_read=True)
    ]


def get_run(account_id: str, assistant_id: str, run_id: str) -> TestRun:
    """The run with every scenario's result so far (≤ 50 items, one query)."""
    return _summary_of(_run_item(account_id, assistant_id, run_id)).model_copy(
        update={"results": results(account_id, run_id)}
    )


def get_suite_of_run(account_id: str, assistant_id: str, run_id: str) -> SuiteBody:
    return SuiteBody.model_validate_json(_run_item(account_id, assistant_id, run_id).suite)


def list_runs(
    account_id: str, assistant_id: str, *, limit: int, starting_after: str | None
) -> tuple[list[TestRun], str | None]:
    """Newest first, without the per-scenario results (GET the run for those)."""
    return query_page(
        RunItem,
        keys.account(account_id),
        convert=_summary_of,
        limit=limit,
        starting_after=starting_after,
        range_key_condition=RunItem.sk.startswith(f"{RUN_PREFIX}{assistant_id}#"),
    )


def _write_result(account_id: str, run_id: str, index: int, result: ScenarioResult) -> bool:
    """Write the scenario's result unless it is final already (False: it was, nothing written)."""
    connection()
    try:
        ScenarioItem(
            _scenario_pk(account_id, run_id),
            f"{index:03d}",
            doc=result.model_dump_json(),
            status=result.status,
        ).save(condition=ScenarioItem.pk.does_not_exist() | (ScenarioItem.status == "running"))
    except PutError as error:
        if _conditional_failed(error):
            return False
        raise
    return True


def start_scenario(
    account_id: str, assistant_id: str, run_id: str, result: ScenarioResult, index: int
) -> bool:
    """Mark the scenario running (and the run, if it was queued); False when it has already
    reported (a redelivered message: nothing to do)."""
    if not _write_result(account_id, run_id, index, result):
        return False
    try:
        RunItem(keys.account(account_id), _run_sk(assistant_id, run_id)).update(
            actions=[RunItem.status.set("running")], condition=RunItem.status == "queued"
        )
    except UpdateError as error:
        if not _conditional_failed(error):
            raise
    return True


def finish_scenario(
    account_id: str, assistant_id: str, run_id: str, index: int, result: ScenarioResult
) -> TestRun | None:
    """Write the scenario's final result once and count it in the run; the run after it, or
    None when the scenario had reported already (nothing counted)."""
    assert result.status in FINAL
    if not _write_result(account_id, run_id, index, result):
        return None
    counter = {"passed": RunItem.passed, "failed": RunItem.failed, "error": RunItem.errored}[
        result.status
    ]
    item = RunItem(keys.account(account_id), _run_sk(assistant_id, run_id))
    item.update(
        actions=[
            RunItem.completed.add(1),
            counter.add(1),
            RunItem.test_seconds.add(result.billed_seconds),
        ],
        condition=RunItem.pk.exists(),
    )
    return _summary_of(item)


def close_run(account_id: str, run: TestRun) -> bool:
    """Give a run whose every scenario reported its final status, once (False: closed before)."""
    status = run_status(run)
    if status not in FINAL:
        return False
    connection()
    try:
        RunItem(keys.account(account_id), _run_sk(run.assistant_id, run.id)).update(
            actions=[
                RunItem.status.set(status),
                RunItem.completed_at.set(utcnow().isoformat()),
            ],
            condition=RunItem.status.is_in("queued", "running"),
        )
    except UpdateError as error:
        if _conditional_failed(error):
            return False
        raise
    if status == "passed":
        VerifiedItem(
            keys.account(account_id),
            f"{VERIFIED_PREFIX}{run.assistant_id}#{run.fingerprint}",
            run_id=run.id,
            passed_at=utcnow().isoformat(),
        ).save()
    return True


def passed_run(account_id: str, assistant_id: str, fingerprint: str) -> str | None:
    """The id of the last run that passed with this configuration, if one did."""
    connection()
    try:
        item = VerifiedItem.get(
            keys.account(account_id),
            f"{VERIFIED_PREFIX}{assistant_id}#{fingerprint}",
            consistent_read=True,
        )
    except DoesNotExist:
        return None
    return str(item.run_id)


# --------------------------------------------------------------------------- test minutes


def add_test_seconds(account_id: str, day: date, seconds: int) -> tuple[int, int]:
    """Add to the day's test seconds atomically; the total (before, after)."""
    connection()
    item = TestDayItem(keys.account(account_id), f"{DAY_PREFIX}{day.isoformat()}")
    expires = int(datetime.combine(day, datetime.min.time(), UTC).timestamp()) + DAY_TTL_SECONDS
    item.update(actions=[TestDayItem.seconds.add(seconds), TestDayItem.expires_at.set(expires)])
    after = int(item.seconds)
    return after - seconds, after


def seconds_tested(account_id: str, day: date) -> int:
    connection()
    try:
        item = TestDayItem.get(
            keys.account(account_id), f"{DAY_PREFIX}{day.isoformat()}", consistent_read=True
        )
    except DoesNotExist:
        return 0
    return int(item.seconds)
