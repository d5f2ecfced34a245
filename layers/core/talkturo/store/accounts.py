"""Accounts, API keys and the credit ledger's items."""

from __future__ import annotations

from datetime import datetime

from pynamodb.attributes import UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import DoesNotExist, PutError, TransactWriteError
from pynamodb.transactions import TransactWrite

from talkturo.domain.accounts import Account, ApiKey
from talkturo.domain.common import utcnow
from talkturo.domain.credits import LedgerEntry
from talkturo.errors import Conflict, NotFound
from talkturo.store import keys, ledger
from talkturo.store.table import Document, Item, connection

ACCOUNT_SK = "ACCOUNT"
API_KEY_SK = "APIKEY"


class AccountItem(Document):
    """PK=A#<acct> SK=ACCOUNT."""


class ApiKeyItem(Document):
    """PK=A#<acct> SK=KEY#<key id>: what the account lists."""

    # Kept so revocation can reach the lookup item; a hash, never the secret.
    secret_hash = UnicodeAttribute()
    last_used_at = UTCDateTimeAttribute(null=True)


class ApiKeyLookupItem(Item):
    """PK=APIKEY#<sha256 of the secret> SK=APIKEY: how a request finds its account."""

    account_id = UnicodeAttribute()
    key_id = UnicodeAttribute()
    revoked_at = UTCDateTimeAttribute(null=True)
    last_used_at = UTCDateTimeAttribute(null=True)


def create_account(account: Account, key: ApiKey, secret_hash: str, grant: LedgerEntry) -> None:
    """The account, its first key and its signup grant, all or nothing."""
    connection()
    with TransactWrite(connection=Item._get_connection().connection) as tx:
        tx.save(
            AccountItem(keys.account(account.id), ACCOUNT_SK, doc=account.model_dump_json()),
            condition=AccountItem.pk.does_not_exist(),
        )
        _stage_key(tx, account.id, key, secret_hash)
        ledger.stage_entry(tx, account.id, grant, floor=None)


def _stage_key(tx: TransactWrite, account_id: str, key: ApiKey, secret_hash: str) -> None:
    tx.save(
        ApiKeyItem(
            keys.account(account_id),
            f"KEY#{key.id}",
            doc=key.model_dump_json(),
            secret_hash=secret_hash,
        ),
        condition=ApiKeyItem.pk.does_not_exist(),
    )
    tx.save(
        ApiKeyLookupItem(
            keys.api_key_lookup(secret_hash), API_KEY_SK, account_id=account_id, key_id=key.id
        ),
        condition=ApiKeyLookupItem.pk.does_not_exist(),
    )


def get_account(account_id: str) -> Account:
    connection()
    try:
        item = AccountItem.get(keys.account(account_id), ACCOUNT_SK)
    except DoesNotExist:
        raise NotFound("no such account", param="account") from None
    return Account.model_validate_json(item.doc)


def save_account(account: Account) -> None:
    """Overwrite the account's document (callers read it first; the version guards races)."""
    connection()
    item = AccountItem.get(keys.account(account.id), ACCOUNT_SK, consistent_read=True)
    item.doc = account.model_dump_json()
    try:
        item.save()
    except PutError as error:
        raise Conflict("the account changed at the same time; try again") from error


def add_api_key(account_id: str, key: ApiKey, secret_hash: str) -> None:
    connection()
    with TransactWrite(connection=Item._get_connection().connection) as tx:
        tx.condition_check(
            AccountItem, keys.account(account_id), ACCOUNT_SK, AccountItem.pk.exists()
        )
        _stage_key(tx, account_id, key, secret_hash)


def find_api_key(secret_hash: str) -> ApiKeyLookupItem | None:
    connection()
    try:
        return ApiKeyLookupItem.get(
            keys.api_key_lookup(secret_hash), API_KEY_SK, consistent_read=True
        )
    except DoesNotExist:
        return None


def get_api_key(account_id: str, key_id: str) -> ApiKey:
    connection()
    try:
        item = ApiKeyItem.get(keys.account(account_id), f"KEY#{key_id}")
    except DoesNotExist:
        raise NotFound("no such API key", param="id") from None
    return _key_of(item)


def _key_of(item: ApiKeyItem) -> ApiKey:
    key = ApiKey.model_validate_json(item.doc)
    key.last_used_at = item.last_used_at
    return key


def list_api_keys(account_id: str) -> list[ApiKey]:
    """All keys of an account, newest first (an account holds few)."""
    connection()
    items = ApiKeyItem.query(
        keys.account(account_id), ApiKeyItem.sk.startswith("KEY#"), scan_index_forward=False
    )
    return [_key_of(item) for item in items]


def revoke_api_key(account_id: str, key_id: str) -> ApiKey:
    """Mark the key revoked on both of its items, together."""
    connection()
    try:
        item = ApiKeyItem.get(keys.account(account_id), f"KEY#{key_id}", consistent_read=True)
    except DoesNotExist:
        raise NotFound("no such API key", param="id") from None
    key = _key_of(item)
    if key.revoked_at is not None:
        return key
    key.revoked_at = utcnow()
    item.doc = key.model_dump_json()
    lookup = ApiKeyLookupItem(keys.api_key_lookup(item.secret_hash), API_KEY_SK)
    try:
        with TransactWrite(connection=Item._get_connection().connection) as tx:
            tx.save(item)
            tx.update(lookup, actions=[ApiKeyLookupItem.revoked_at.set(key.revoked_at)])
    except TransactWriteError as error:
        raise Conflict("the key changed at the same time; try again") from error
    return key


def touch_api_key(account_id: str, key_id: str, secret_hash: str, when: datetime) -> None:
    """Record when a key was last used, on both of its items (two blind writes, no reads)."""
    connection()
    ApiKeyLookupItem(keys.api_key_lookup(secret_hash), API_KEY_SK).update(
        actions=[ApiKeyLookupItem.last_used_at.set(when)]
    )
    ApiKeyItem(keys.account(account_id), f"KEY#{key_id}").update(
        actions=[ApiKeyItem.last_used_at.set(when)], add_version_condition=False
    )
