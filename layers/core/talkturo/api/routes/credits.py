"""The credit balance and its ledger."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from talkturo.api.deps import Caller, Paging
from talkturo.domain.common import Page
from talkturo.domain.credits import Balance, EntryKind, LedgerEntry
from talkturo.services import credits

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
