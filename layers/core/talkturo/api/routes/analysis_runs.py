"""Analysis runs: the post-call analysis re-run over the past calls of an assistant or a
campaign, in the background, with progress."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from talkturo.api.deps import Caller, IdempotencyKey, Paging
from talkturo.api.idempotency import create_once
from talkturo.api.openapi import errors_at
from talkturo.domain.call_analysis import AnalysisRun, AnalysisRunCreate
from talkturo.domain.common import Page
from talkturo.services import analyses

router = APIRouter(tags=["Analysis runs"])


@router.post(
    "/analysis-runs",
    responses=errors_at(404),
    response_model=AnalysisRun,
    status_code=202,
    summary="Re-run the analysis over the ended calls of one assistant or one campaign",
)
def create_run(
    caller: Caller, body: AnalysisRunCreate, idempotency_key: IdempotencyKey = None
) -> Any:
    return create_once(
        account_id=caller.account_id,
        key=idempotency_key,
        route="POST /v1/analysis-runs",
        body=body,
        work=lambda: analyses.create_run(caller.account_id, body),
    )


@router.get(
    "/analysis-runs", response_model=Page[AnalysisRun], summary="Analysis runs, newest first"
)
def list_runs(caller: Caller, paging: Paging) -> Page[AnalysisRun]:
    return analyses.list_runs(
        caller.account_id, limit=paging.limit, starting_after=paging.starting_after
    )


@router.get(
    "/analysis-runs/{run_id}",
    response_model=AnalysisRun,
    summary="An analysis run and its progress (calls found, analysed, failed)",
)
def get_run(caller: Caller, run_id: str) -> AnalysisRun:
    return analyses.get_run(caller.account_id, run_id)
