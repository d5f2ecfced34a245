"""The credit balance and its ledger."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from talkturo.api.deps import Caller, Paging
from talkturo.domain.common import Page
from talkturo.domain.credits import Balance, EntryKind, LedgerEntry
from talkturo.domain.usage import GroupBy, UsageReport
from talkturo.services import credits, usage

router = APIRouter(tags=["Credits"])


@router.get("/credits", response_model=Balance, summary="The account's credit balance")
def get_balance(caller: Caller) -> Balance:
    return credits.balance(caller.account_id)


@router.get(
    "/credits/ledger",
    response_model=Page[LedgerEntry],
    summary="Every change of the balance, newest first",
)
def list_ledger(
    caller: Caller,
    paging: Paging,
    kind: Annotated[EntryKind | None, Query(description="Only entries of this kind.")] = None,
) -> Page[LedgerEntry]:
    return credits.entries(
        caller.account_id, limit=paging.limit, starting_after=paging.starting_after, kind=kind
    )


@router.get(
    "/credits/usage",
    response_model=UsageReport,
    summary="What the credits were spent on, by day, assistant, campaign or number",
)
def get_usage(
    caller: Caller,
    start: Annotated[
        date | None,
        Query(alias="from", description="First day, YYYY-MM-DD, UTC (default: 29 days before to)."),
    ] = None,
    end: Annotated[
        date | None, Query(alias="to", description="Last day, included (default: today).")
    ] = None,
    group_by: Annotated[GroupBy, Query(description="How the rows are grouped.")] = "day",
) -> UsageReport:
    return usage.report(caller.account_id, start=start, end=end, group_by=group_by)
