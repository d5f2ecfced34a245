"""The caller's account and its API keys."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from talkturo.api.deps import Caller, IdempotencyKey
from talkturo.api.idempotency import create_once
from talkturo.api.openapi import errors_at
from talkturo.domain.accounts import Account, AccountUpdate, ApiKey, ApiKeyCreate, ApiKeyWithSecret
from talkturo.domain.common import Page
from talkturo.services import accounts

router = APIRouter(tags=["Account"])


@router.get("/account", response_model=Account, summary="The account the API key belongs to")
def get_account(caller: Caller) -> Account:
    return accounts.get_account(caller.account_id)


@router.patch(
    "/account",
    response_model=Account,
    responses=errors_at(409),
    summary="Change the account's settings",
)
def update_account(caller: Caller, changes: AccountUpdate) -> Account:
    return accounts.update_account(caller.account_id, changes)


@router.post(
    "/api-keys",
    response_model=ApiKeyWithSecret,
    status_code=201,
    summary="Create an API key (the secret is shown once, in this answer)",
)
def create_api_key(
    caller: Caller, body: ApiKeyCreate, idempotency_key: IdempotencyKey = None
) -> Any:
    return create_once(
        account_id=caller.account_id,
        key=idempotency_key,
        route="POST /v1/api-keys",
        body=body,
        work=lambda: accounts.create_api_key(caller.account_id, body.name),
    )


@router.get("/api-keys", response_model=Page[ApiKey], summary="List the account's API keys")
def list_api_keys(caller: Caller) -> Page[ApiKey]:
    keys = accounts.list_api_keys(caller.account_id)
    return Page[ApiKey](data=keys, has_more=False)


@router.delete(
    "/api-keys/{key_id}",
    response_model=ApiKey,
    responses=errors_at(409),
    summary="Revoke an API key",
)
def revoke_api_key(caller: Caller, key_id: str) -> ApiKey:
    return accounts.revoke_api_key(caller, key_id)
