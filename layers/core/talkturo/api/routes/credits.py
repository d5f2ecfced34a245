"""The credit balance, its ledger, and buying credits (packages, Stripe Checkout, payments)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from talkturo.api.deps import Caller, IdempotencyKey, Paging
from talkturo.api.idempotency import create_once
from talkturo.api.openapi import errors_at
from talkturo.domain.auto_reload import AutoReload, AutoReloadUpdate
from talkturo.domain.billing import CheckoutCreate, CheckoutSession, PackageList, Payment
from talkturo.domain.common import Page
from talkturo.domain.credits import Balance, EntryKind, LedgerEntry
from talkturo.domain.usage import GroupBy, UsageReport
from talkturo.services import auto_reload, billing, credits, usage

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
    "/credits/packages",
    response_model=PackageList,
    summary="The credit packages on sale, and the custom amount's range",
)
def list_packages(caller: Caller) -> PackageList:
    return billing.packages()


@router.post(
    "/credits/checkout",
    response_model=CheckoutSession,
    status_code=201,
    responses=errors_at(502, 503),
    summary="Start buying credits: a Stripe Checkout page to send the buyer to",
    description="Credits are added once Stripe confirms the payment through its signed "
    "webhook (usually seconds after paying), never by the return to `success_url`.",
)
def start_checkout(
    caller: Caller, body: CheckoutCreate, request: Request, idempotency_key: IdempotencyKey = None
) -> Any:
    return create_once(
        account_id=caller.account_id,
        key=idempotency_key,
        route="POST /v1/credits/checkout",
        body=body,
        work=lambda: billing.start_checkout(
            caller.account_id,
            body,
            idempotency_key=idempotency_key,
            called_at=str(request.base_url),
        ),
    )


@router.get(
    "/credits/payments",
    response_model=Page[Payment],
    summary="The payments that bought credits, newest first",
)
def list_payments(caller: Caller, paging: Paging) -> Page[Payment]:
    return billing.payments(
        caller.account_id, limit=paging.limit, starting_after=paging.starting_after
    )


@router.get(
    "/credits/auto-reload",
    response_model=AutoReload,
    summary="The auto-reload settings, and what auto-reload is doing",
)
def get_auto_reload(caller: Caller) -> AutoReload:
    return auto_reload.get(caller.account_id)


@router.patch(
    "/credits/auto-reload",
    response_model=AutoReload,
    responses=errors_at(409, 502, 503),
    summary="Change the auto-reload settings (threshold, package, monthly cap, on or off)",
    description="Turning it on needs a card saved at a checkout with `save_card` (409 "
    "`no_saved_card` otherwise). When the balance is already below the threshold, a reload "
    "is charged at once and the answer says so (`charging_now`).",
)
def update_auto_reload(caller: Caller, changes: AutoReloadUpdate) -> AutoReload:
    return auto_reload.update(caller.account_id, changes)


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
