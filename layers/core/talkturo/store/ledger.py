"""The credit ledger: entries, their idempotency guards, and the balance, written together.

Every write is one DynamoDB transaction of three items: the guard (exists once per
idempotency key), the entry, and an atomic ADD on the balance. Either all three land or none
does, so the balance always equals the sum of the entries, whatever writers run at once.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pynamodb.attributes import UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import DoesNotExist, TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from talkturo.domain.credits import Balance, LedgerEntry
from talkturo.domain.usage import UsageTags
from talkturo.errors import Conflict, InsufficientCredits, NotFound
from talkturo.store import keys
from talkturo.store import usage as usage_store
from talkturo.store.attributes import DecimalAttribute
from talkturo.store.paging import query_page
from talkturo.store.table import Document, Item, connection


class BalanceItem(Item):
    """PK=A#<acct> SK=BALANCE: the running sum of the ledger; `low_since` is set while the
    account has been told its balance is low (cleared when it is back above the threshold)."""

    balance = DecimalAttribute()
    updated_at = UTCDateTimeAttribute(null=True)
    low_since = UTCDateTimeAttribute(null=True)


class LedgerEntryItem(Document):
    """PK=A#<acct> SK=TXN#<txn id>."""

    kind = UnicodeAttribute()


class LedgerGuardItem(Item):
    """PK=A#<acct> SK=TXNKEY#<idempotency key>: the entry this key already produced."""

    txn_id = UnicodeAttribute()


class _Contention(Exception):
    """Another transaction touched the same items; the write is safe to try again."""


def stage_entry(
    tx: TransactWrite,
    account_id: str,
    entry: LedgerEntry,
    *,
    floor: Decimal | None,
    usage: UsageTags | None = None,
) -> None:
    """Add the entry's three writes to a transaction (also used by account creation), and
    with `usage` the `ADD`s of its usage aggregates (store.usage), so they count it once.

    `floor` is the lowest balance the write may leave; None lets it go below zero (final
    settlement of a call that ran on).
    """
    pk = keys.account(account_id)
    tx.save(
        LedgerGuardItem(pk, f"TXNKEY#{entry.idempotency_key}", txn_id=entry.id),
        condition=LedgerGuardItem.pk.does_not_exist(),
    )
    tx.save(
        LedgerEntryItem(pk, f"TXN#{entry.id}", doc=entry.model_dump_json(), kind=entry.kind),
        condition=LedgerEntryItem.pk.does_not_exist(),
    )
    condition = None
    if floor is not None and entry.amount < 0:
        condition = BalanceItem.balance >= floor - entry.amount
    tx.update(
        BalanceItem(pk, "BALANCE"),
        actions=[
            BalanceItem.balance.add(entry.amount),
            BalanceItem.updated_at.set(entry.created_at),
        ],
        condition=condition,
    )
    if usage is not None:
        usage_store.stage(tx, account_id, entry.created_at.date(), usage, -entry.amount)


def post(
    account_id: str,
    entry: LedgerEntry,
    *,
    floor: Decimal | None = Decimal(0),
    usage: UsageTags | None = None,
) -> LedgerEntry:
    """Write the entry exactly once per idempotency key; a repeat returns the first entry."""
    connection()
    try:
        _post_once(account_id, entry, floor, usage)
    except _Contention as error:
        raise Conflict("the balance is under heavy concurrent use; try again") from error
    except TransactWriteError as error:
        reasons = [r.code if r else None for r in error.cancellation_reasons]
        if reasons and reasons[0] == "ConditionalCheckFailed":
            return _replay(account_id, entry)
        if len(reasons) > 2 and reasons[2] == "ConditionalCheckFailed":
            raise InsufficientCredits(
                "the account has too few credits for this", param="amount"
            ) from None
        raise
    return entry


@retry(
    retry=retry_if_exception_type(_Contention),
    stop=stop_after_attempt(12),
    wait=wait_random_exponential(multiplier=0.02, max=0.5),
    reraise=True,
)
def _post_once(
    account_id: str, entry: LedgerEntry, floor: Decimal | None, usage: UsageTags | None
) -> None:
    try:
        with TransactWrite(connection=Item._get_connection().connection) as tx:
            stage_entry(tx, account_id, entry, floor=floor, usage=usage)
    except TransactWriteError as error:
        codes = {r.code for r in error.cancellation_reasons if r}
        conflict = error.cause_response_code == "TransactionConflictException"
        if conflict or "TransactionConflict" in codes:
            raise _Contention from error
        raise


def _replay(account_id: str, entry: LedgerEntry) -> LedgerEntry:
    guard = LedgerGuardItem.get(
        keys.account(account_id), f"TXNKEY#{entry.idempotency_key}", consistent_read=True
    )
    first = get_entry(account_id, guard.txn_id)
    if (first.kind, first.amount) != (entry.kind, entry.amount):
        raise Conflict(
            "this idempotency key was already used for a different ledger entry",
            param="idempotency_key",
            code="idempotency_key_reused",
        )
    return first


def entry_for_key(account_id: str, idempotency_key: str) -> LedgerEntry | None:
    """The entry an idempotency key produced, or None when it produced none (yet)."""
    connection()
    try:
        guard = LedgerGuardItem.get(
            keys.account(account_id), f"TXNKEY#{idempotency_key}", consistent_read=True
        )
    except DoesNotExist:
        return None
    return get_entry(account_id, guard.txn_id)


def entries_with_key_prefix(account_id: str, prefix: str) -> list[LedgerEntry]:
    """Every entry whose idempotency key starts with `prefix` (one range of guards)."""
    connection()
    pk = keys.account(account_id)
    guards = LedgerGuardItem.query(
        pk, LedgerGuardItem.sk.startswith(f"TXNKEY#{prefix}"), consistent_read=True
    )
    found = LedgerEntryItem.batch_get(
        [(pk, f"TXN#{guard.txn_id}") for guard in guards], consistent_read=True
    )
    return sorted((LedgerEntry.model_validate_json(item.doc) for item in found), key=lambda e: e.id)


def get_entry(account_id: str, txn_id: str) -> LedgerEntry:
    connection()
    try:
        item = LedgerEntryItem.get(keys.account(account_id), f"TXN#{txn_id}", consistent_read=True)
    except DoesNotExist:
        raise NotFound("no such ledger entry", param="id") from None
    return LedgerEntry.model_validate_json(item.doc)


def balance(account_id: str) -> Balance:
    connection()
    try:
        item = BalanceItem.get(keys.account(account_id), "BALANCE", consistent_read=True)
    except DoesNotExist:
        return Balance(balance=Decimal(0))
    return Balance(balance=item.balance, updated_at=item.updated_at)


def mark_low(account_id: str, threshold: Decimal, now: datetime) -> bool:
    """Note that the balance fell below `threshold`; True only for the write that noted it
    (once per drop, whoever races)."""
    connection()
    item = BalanceItem(keys.account(account_id), "BALANCE")
    try:
        item.update(
            actions=[BalanceItem.low_since.set(now)],
            condition=(BalanceItem.balance < threshold) & BalanceItem.low_since.does_not_exist(),
        )
    except UpdateError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


def clear_low(account_id: str, threshold: Decimal) -> None:
    """The balance is back at or above `threshold`: the next drop is told again."""
    connection()
    item = BalanceItem(keys.account(account_id), "BALANCE")
    try:
        item.update(
            actions=[BalanceItem.low_since.remove()],
            condition=(BalanceItem.balance >= threshold) & BalanceItem.low_since.exists(),
        )
    except UpdateError as error:
        if error.cause_response_code != "ConditionalCheckFailedException":
            raise


def low_since(account_id: str) -> datetime | None:
    connection()
    try:
        item = BalanceItem.get(keys.account(account_id), "BALANCE", consistent_read=True)
    except DoesNotExist:
        return None
    return item.low_since


def list_entries(
    account_id: str, *, limit: int, starting_after: str | None, kind: str | None = None
) -> tuple[list[LedgerEntry], str | None]:
    return query_page(
        LedgerEntryItem,
        keys.account(account_id),
        convert=lambda item: LedgerEntry.model_validate_json(item.doc),
        limit=limit,
        starting_after=starting_after,
        range_key_condition=LedgerEntryItem.sk.startswith("TXN#"),
        filter_condition=(LedgerEntryItem.kind == kind) if kind else None,
    )


def call_entries(account_id: str, call_id: str) -> list[LedgerEntry]:
    """Every entry a call's meters and settlements wrote: their idempotency keys all begin
    `call:<call id>:`, so the call's guards are one range of the account's partition."""
    return entries_with_key_prefix(account_id, f"call:{call_id}:")
