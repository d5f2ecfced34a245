"""Credits: the balance, the ledger, and the write path every charge and top-up goes through."""

from __future__ import annotations

from decimal import Decimal

from talkturo.config import get_settings
from talkturo.domain.common import Page, quantize_credits, utcnow
from talkturo.domain.credits import (
    CREDITING,
    DEBITING,
    Balance,
    EntryKind,
    LedgerEntry,
    bounded_credits,
)
from talkturo.domain.usage import UsageTags
from talkturo.errors import InvalidRequest
from talkturo.ids import new_id
from talkturo.logs import logger
from talkturo.store import ledger


def record(
    account_id: str,
    kind: EntryKind,
    amount: Decimal,
    *,
    idempotency_key: str,
    description: str = "",
    reference: str | None = None,
    allow_negative_balance: bool = False,
    overdraft: Decimal = Decimal(0),
    usage: UsageTags | None = None,
) -> LedgerEntry:
    """Write one ledger entry exactly once per idempotency key and move the balance with it.

    Debits refuse to take the balance below zero (InsufficientCredits) unless
    `allow_negative_balance`, which a call's final settlement uses for its last seconds.
    `overdraft` lets a debit go that far below zero instead (a live call drawing against a
    pending auto-reload). `usage` says what a usage entry (or the return of one) paid for: the
    usage report's aggregates move with the entry (services.usage).
    """
    try:
        amount = quantize_credits(bounded_credits(amount))
    except ValueError as error:
        raise InvalidRequest(f"amount: {error}", param="amount") from None
    if amount == 0:
        raise InvalidRequest("a ledger entry must move the balance", param="amount")
    if (kind in CREDITING and amount < 0) or (kind in DEBITING and amount > 0):
        raise InvalidRequest(f"a {kind} entry cannot have that sign", param="amount")
    if not idempotency_key or len(idempotency_key) > 255:
        raise InvalidRequest(
            "an idempotency key of 1 to 255 characters is required", param="idempotency_key"
        )
    entry = LedgerEntry(
        id=new_id("transaction"),
        kind=kind,
        amount=amount,
        description=description,
        reference=reference,
        idempotency_key=idempotency_key,
        created_at=utcnow(),
    )
    posted = ledger.post(
        account_id, entry, floor=None if allow_negative_balance else -overdraft, usage=usage
    )
    _watch_low(account_id, posted)
    _watch_reload(account_id, posted)
    if kind == "purchase":
        # Run on every purchase, replays included, so a crash right after the ledger write is
        # repaired by the retry that replays it.
        _became_paid(account_id)
    if posted.amount > 0:
        _collect_rent(account_id)
    return posted


def low_threshold() -> Decimal:
    return quantize_credits(get_settings().credits_low_threshold)


def _watch_low(account_id: str, entry: LedgerEntry) -> None:
    """`credits.low` once per drop: when a charge leaves the balance below the threshold for
    the first time since it was last at or above it. Never fails the entry (written already)."""
    threshold = low_threshold()
    try:
        if entry.amount > 0:
            ledger.clear_low(account_id, threshold)
            return
        now = utcnow()
        if ledger.balance(account_id).balance >= threshold or not ledger.mark_low(
            account_id, threshold, now
        ):
            return
        from talkturo.services import events

        events.emit(
            account_id,
            "credits.low",
            {
                "balance": f"{ledger.balance(account_id).balance:.4f}",
                "threshold": f"{threshold:.4f}",
                "transaction_id": entry.id,
            },
            key=f"credits.low:{now.isoformat()}",
        )
    except Exception:  # noqa: BLE001 - the entry is written; telling is secondary
        logger.exception("low balance could not be checked", extra={"id": entry.id})


def _watch_reload(account_id: str, entry: LedgerEntry) -> None:
    """Auto-reload: a usage draw may start a reload (queued for the billing worker: nothing
    here talks to Stripe); a credit may arm it again. Never fails the entry."""
    from talkturo.services import auto_reload

    try:
        if entry.kind == "usage" and entry.amount < 0:
            auto_reload.after_draw(account_id)
        elif entry.amount > 0:
            auto_reload.after_credit(account_id)
    except Exception:  # noqa: BLE001 - the entry is written; the next draw looks again
        logger.exception("auto-reload could not be checked", extra={"id": entry.id})


def _became_paid(account_id: str) -> None:
    """Buying credits makes the account paid (SPEC §1) and its trial numbers permanent (§3)."""
    from talkturo.services import accounts, numbers

    accounts.mark_paid(account_id)
    numbers.lift_trial_expiry(account_id)


def _collect_rent(account_id: str) -> None:
    """Credits arrived: numbers suspended for unpaid rent are charged and resume, and rent
    that fell due meanwhile is charged (services.numbers). Never fails the entry."""
    from talkturo.services import numbers

    try:
        numbers.collect_rent(account_id)
    except Exception:  # noqa: BLE001 - the entry is written; the hourly renewal tries again
        logger.exception("rent could not be collected", extra={"account": account_id})


def balance(account_id: str) -> Balance:
    return ledger.balance(account_id)


def entries(
    account_id: str, *, limit: int, starting_after: str | None, kind: EntryKind | None = None
) -> Page[LedgerEntry]:
    data, cursor = ledger.list_entries(
        account_id, limit=limit, starting_after=starting_after, kind=kind
    )
    return Page[LedgerEntry](data=data, has_more=cursor is not None, next_cursor=cursor)
