"""Accounts and API keys: sign-up, authentication, key management."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from decimal import Decimal

from talkturo.config import get_settings
from talkturo.domain.accounts import (
    Account,
    AccountCreate,
    AccountUpdate,
    ApiKey,
    ApiKeyWithSecret,
    Principal,
)
from talkturo.domain.common import quantize_credits, utcnow
from talkturo.domain.credits import LedgerEntry
from talkturo.errors import AuthenticationFailed, Conflict, InvalidRequest
from talkturo.ids import new_id
from talkturo.store import accounts as store

KEY_PREFIX = "tk_"
# How stale `last_used_at` may get before a request writes it again: one write a minute at most.
TOUCH_INTERVAL = timedelta(minutes=1)


def hash_secret(secret: str) -> str:
    # API keys carry 256 bits of randomness, so a fast unsalted hash is the right tool here.
    return hashlib.sha256(secret.encode()).hexdigest()


def _mint_key(name: str, secret: str | None = None) -> tuple[ApiKeyWithSecret, str]:
    if secret is None:
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
    elif not secret.startswith(KEY_PREFIX) or len(secret) < 24:
        raise InvalidRequest(
            f"a chosen API key must start with {KEY_PREFIX!r} and be at least 24 characters",
            param="api_key",
        )
    key = ApiKeyWithSecret(
        id=new_id("api_key"), name=name, prefix=secret[:10], created_at=utcnow(), secret=secret
    )
    return key, hash_secret(secret)


def create_account(
    data: AccountCreate, *, key_name: str = "default", chosen_secret: str | None = None
) -> tuple[Account, ApiKeyWithSecret]:
    """A new account with its first API key and the signup credit grant."""
    now = utcnow()
    account = Account(id=new_id("account"), created_at=now, **data.model_dump())
    key, secret_hash = _mint_key(key_name, chosen_secret)
    grant = LedgerEntry(
        id=new_id("transaction"),
        kind="grant",
        amount=quantize_credits(Decimal(get_settings().signup_grant_credits)),
        description="signup grant",
        idempotency_key="signup-grant",
        created_at=now,
    )
    store.create_account(account, ApiKey.model_validate(key.model_dump()), secret_hash, grant)
    return account, key


def authenticate(authorization: str | None) -> Principal:
    """Resolve `Authorization: Bearer <key>` to its account, or refuse."""
    if not authorization:
        raise AuthenticationFailed("missing Authorization header: use 'Bearer <api key>'")
    scheme, _, secret = authorization.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise AuthenticationFailed("the Authorization header must be 'Bearer <api key>'")
    secret_hash = hash_secret(secret)
    found = store.find_api_key(secret_hash)
    if found is None:
        raise AuthenticationFailed("invalid API key")
    if found.revoked_at is not None:
        raise AuthenticationFailed("this API key has been revoked", code="api_key_revoked")
    now = utcnow()
    if found.last_used_at is None or now - found.last_used_at > TOUCH_INTERVAL:
        store.touch_api_key(found.account_id, found.key_id, secret_hash, now)
    return Principal(account_id=found.account_id, key_id=found.key_id)


def get_account(account_id: str) -> Account:
    return store.get_account(account_id)


def update_account(account_id: str, changes: AccountUpdate) -> Account:
    account = store.get_account(account_id)
    updated = account.model_copy(update=changes.model_dump(exclude_unset=True, exclude_none=True))
    store.save_account(updated)
    return updated


def mark_paid(account_id: str) -> None:
    """The account has bought credits: it is on the paid plan from now on (never back).

    Purchases may land at the same time: a lost race is read again, and ends as soon as the
    account is seen paid.
    """
    for _ in range(5):
        account = store.get_account(account_id)
        if account.plan == "paid":
            return
        try:
            store.save_account(account.model_copy(update={"plan": "paid"}))
        except Conflict:
            continue
        return
    raise Conflict("the account changed at the same time; try again")


def create_api_key(
    account_id: str, name: str, *, chosen_secret: str | None = None
) -> ApiKeyWithSecret:
    key, secret_hash = _mint_key(name, chosen_secret)
    store.add_api_key(account_id, ApiKey.model_validate(key.model_dump()), secret_hash)
    return key


def list_api_keys(account_id: str) -> list[ApiKey]:
    return store.list_api_keys(account_id)


def revoke_api_key(principal: Principal, key_id: str) -> ApiKey:
    if key_id == principal.key_id:
        raise InvalidRequest(
            "a key cannot revoke itself; use another key of the account", param="id"
        )
    return store.revoke_api_key(principal.account_id, key_id)
