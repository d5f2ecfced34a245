"""Operator routes, behind the deployment's admin secret: sign up accounts, grant credits,
suspend numbers, set an account's dialing rules, list dead letters."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from talkturo.api.deps import IdempotencyKey, Paging, require_admin
from talkturo.api.idempotency import create_once
from talkturo.api.openapi import errors_at
from talkturo.domain.accounts import Account, AccountCreate, ApiKeyWithSecret
from talkturo.domain.common import Name, Page, utcnow
from talkturo.domain.credits import CreditGrant, LedgerEntry
from talkturo.domain.dead_letters import DeadLetter, DeadLetterQueue
from talkturo.domain.dialing import DialingSettings, DialingView
from talkturo.domain.numbers import PhoneNumber
from talkturo.services import accounts, billing, credits, dead_letters, dialing, numbers

# 404 on every route: a deployment without an admin secret has no admin API.
router = APIRouter(
    prefix="/admin",
    tags=["Admin"],
    dependencies=[Depends(require_admin)],
    responses=errors_at(404),
)


class NewAccount(AccountCreate):
    key_name: Name = Field(default="default", min_length=1, max_length=100)


class SignedUp(BaseModel):
    account: Account
    api_key: ApiKeyWithSecret


@router.post(
    "/accounts",
    response_model=SignedUp,
    status_code=201,
    summary="Create an account and its first API key",
)
def create_account(body: NewAccount, idempotency_key: IdempotencyKey = None) -> Any:
    def work() -> SignedUp:
        data = AccountCreate.model_validate(body.model_dump(exclude={"key_name"}))
        account, key = accounts.create_account(data, key_name=body.key_name)
        return SignedUp(account=account, api_key=key)

    return create_once(
        account_id="admin",
        key=idempotency_key,
        route="POST /v1/admin/accounts",
        body=body,
        work=work,
    )


@router.post(
    "/accounts/{account_id}/credits",
    responses=errors_at(402),
    response_model=LedgerEntry,
    status_code=201,
    summary="Grant, refund or adjust an account's credits",
)
def grant_credits(
    account_id: str, body: CreditGrant, idempotency_key: IdempotencyKey = None
) -> Any:
    accounts.get_account(account_id)

    def work() -> LedgerEntry:
        return credits.record(
            account_id,
            body.kind,
            body.amount,
            idempotency_key=idempotency_key or _fresh_key(),
            description=body.description,
            reference=body.reference,
        )

    return create_once(
        account_id=account_id,
        key=idempotency_key,
        route="POST /v1/admin/accounts/credits",
        body=body,
        work=work,
    )


@router.post(
    "/phone-numbers/{phone_number_id}/suspend",
    responses=errors_at(409),
    response_model=PhoneNumber,
    summary="Suspend an active number (it can no longer be assigned or used)",
)
def suspend_number(phone_number_id: str) -> PhoneNumber:
    return numbers.suspend(numbers.account_of(phone_number_id), phone_number_id)


@router.post(
    "/phone-numbers/{phone_number_id}/resume",
    responses=errors_at(409),
    response_model=PhoneNumber,
    summary="Make a suspended number active again",
)
def resume_number(phone_number_id: str) -> PhoneNumber:
    return numbers.resume(numbers.account_of(phone_number_id), phone_number_id)


@router.get(
    "/dead-letters",
    response_model=Page[DeadLetter],
    summary="List recent dead letters (jobs that failed every delivery), newest first",
)
def list_dead_letters(paging: Paging, queue: DeadLetterQueue | None = None) -> Page[DeadLetter]:
    return dead_letters.list_dead_letters(
        queue=queue, limit=paging.limit, starting_after=paging.starting_after
    )


@router.put(
    "/accounts/{account_id}/dialing",
    response_model=DialingView,
    summary="Set the countries an account may call and how it dials extensions",
)
def set_dialing(account_id: str, body: DialingSettings) -> DialingView:
    accounts.get_account(account_id)
    return dialing.set_settings(account_id, body)


def _fresh_key() -> str:
    from talkturo.ids import new_id

    return "admin-" + new_id("transaction")


class Difference(BaseModel):
    kind: str = Field(
        description="missing_grant, amount_mismatch, missing_refund, missing_refund_return, "
        "missing_dispute or unknown_payment."
    )
    stripe_id: str
    account_id: str | None = None
    detail: str


class Reconciliation(BaseModel):
    object: str = "reconciliation"
    since: datetime
    payments: int
    refunds: int
    disputes: int
    not_ours: int = Field(description="Stripe payments that name no account of this platform.")
    differences: list[Difference]


@router.get(
    "/billing/reconciliation",
    response_model=Reconciliation,
    responses=errors_at(502, 503),
    summary="Stripe's payments, refunds and disputes against the ledger",
)
def reconcile(
    since_days: Annotated[int, Query(ge=1, le=90, description="How far back, in days.")] = 7,
) -> Reconciliation:
    report = billing.reconcile(utcnow() - timedelta(days=since_days))
    return Reconciliation.model_validate(report.as_dict())
