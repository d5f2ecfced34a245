"""An assistant's test suites and test runs (docs/test-runs.md). Served with the assistants'
routes (they live under /v1/assistants/{id})."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from talkturo.api.deps import Caller, IdempotencyKey, Paging
from talkturo.api.idempotency import create_once
from talkturo.api.openapi import errors_at
from talkturo.domain.common import Page
from talkturo.domain.test_runs import (
    TestRun,
    TestRunCreate,
    TestSuite,
    TestSuiteCreate,
    TestSuiteDeleted,
    TestSuiteUpdate,
)
from talkturo.services import test_runs

router = APIRouter(tags=["Test runs"])
SUITES = "/assistants/{assistant_id}/test-suites"
RUNS = "/assistants/{assistant_id}/test-runs"


@router.post(
    SUITES, response_model=TestSuite, status_code=201, summary="Keep a test suite for an assistant"
)
def create_suite(
    caller: Caller, assistant_id: str, body: TestSuiteCreate, idempotency_key: IdempotencyKey = None
) -> Any:
    return create_once(
        account_id=caller.account_id,
        key=idempotency_key,
        route=f"POST /v1{SUITES.format(assistant_id=assistant_id)}",
        body=body,
        work=lambda: test_runs.create_suite(caller.account_id, assistant_id, body),
    )


@router.get(SUITES, response_model=Page[TestSuite], summary="An assistant's test suites")
def list_suites(caller: Caller, assistant_id: str, paging: Paging) -> Page[TestSuite]:
    return test_runs.list_suites(
        caller.account_id, assistant_id, limit=paging.limit, starting_after=paging.starting_after
    )


@router.get(SUITES + "/{suite_id}", response_model=TestSuite, summary="A test suite")
def get_suite(caller: Caller, assistant_id: str, suite_id: str) -> TestSuite:
    return test_runs.get_suite(caller.account_id, assistant_id, suite_id)


@router.patch(
    SUITES + "/{suite_id}",
    response_model=TestSuite,
    summary="Change a test suite (the fields given replace the stored ones)",
)
def update_suite(
    caller: Caller, assistant_id: str, suite_id: str, body: TestSuiteUpdate
) -> TestSuite:
    return test_runs.update_suite(caller.account_id, assistant_id, suite_id, body)


@router.delete(SUITES + "/{suite_id}", response_model=TestSuiteDeleted, summary="Delete a suite")
def delete_suite(caller: Caller, assistant_id: str, suite_id: str) -> TestSuiteDeleted:
    return test_runs.delete_suite(caller.account_id, assistant_id, suite_id)


@router.post(
    RUNS,
    responses=errors_at(402, 404, 409),
    response_model=TestRun,
    status_code=202,
    summary="Run a test suite (stored or inline): one simulated call per scenario, in parallel",
)
def create_run(
    caller: Caller, assistant_id: str, body: TestRunCreate, idempotency_key: IdempotencyKey = None
) -> Any:
    return create_once(
        account_id=caller.account_id,
        key=idempotency_key,
        route=f"POST /v1{RUNS.format(assistant_id=assistant_id)}",
        body=body,
        work=lambda: test_runs.create_run(caller.account_id, assistant_id, body),
    )


@router.get(RUNS, response_model=Page[TestRun], summary="An assistant's test runs, newest first")
def list_runs(caller: Caller, assistant_id: str, paging: Paging) -> Page[TestRun]:
    return test_runs.list_runs(
        caller.account_id, assistant_id, limit=paging.limit, starting_after=paging.starting_after
    )


@router.get(
    RUNS + "/{run_id}",
    response_model=TestRun,
    summary="A test run: its progress and each scenario's verdict per expectation",
)
def get_run(caller: Caller, assistant_id: str, run_id: str) -> TestRun:
    return test_runs.get_run(caller.account_id, assistant_id, run_id)
