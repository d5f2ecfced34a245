"""Billing items: each account's Stripe customer, the Stripe events received, and the payments
that bought credits (docs/data-model.md).

- StripeCustomerItem  PK=A#<acct>                SK=STRIPE#CUSTOMER   created once, kept;
  replaced (conditionally, the old id kept in `former_ids`) when Stripe no longer knows it
- StripeEventItem     PK=STRIPE#EVENT#<evt id>   SK=EVENT             the verified body, stored
  once per event id (a conditional put); `applied_at` once the worker applied it; expires
  after 90 days (Stripe retries a delivery for up to 3 days)
- PaymentItem         PK=A#<acct>                SK=PAYMENT#<pi id>   GSI1 PAYMENTS#<yyyy-mm-dd>
  / <created iso>#<pi id>: the payments of a day, over all accounts, for reconciliation;
  GSI2 A#<acct>#PAYMENTS / <created iso>#<pi id>: the account's payments, newest first
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pynamodb.attributes import ListAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import DoesNotExist, PutError, UpdateError

from talkturo.domain.billing import Payment
from talkturo.domain.common import utcnow
from talkturo.store import keys
from talkturo.store.table import Document, Item, connection

EVENT_DAYS = 90


class StripeCustomerItem(Item):
    customer_id = UnicodeAttribute()
    # Customers this one replaced: their payments are still the account's.
    former_ids: ListAttribute[str] = ListAttribute(null=True)


class StripeEventItem(Item):
    type = UnicodeAttribute()
    body = UnicodeAttribute()
    received_at = UTCDateTimeAttribute()
    applied_at = UTCDateTimeAttribute(null=True)
    outcome = UnicodeAttribute(null=True)


class PaymentItem(Document):
    pass


def _conditional_failed(error: PutError | UpdateError) -> bool:
    return error.cause_response_code == "ConditionalCheckFailedException"


# ----------------------------------------------------------------------------- customers
def customer_of(account_id: str) -> str | None:
    connection()
    try:
        item = StripeCustomerItem.get(keys.account(account_id), "STRIPE#CUSTOMER")
    except DoesNotExist:
        return None
    return item.customer_id


def customers_of(account_id: str) -> set[str]:
    """Every Stripe customer the account has had: the kept one and those it replaced."""
    connection()
    try:
        item = StripeCustomerItem.get(keys.account(account_id), "STRIPE#CUSTOMER")
    except DoesNotExist:
        return set()
    return {item.customer_id, *(item.former_ids or [])}


def replace_customer(account_id: str, missing_id: str, customer_id: str) -> str:
    """Keep `customer_id` instead of `missing_id` (which Stripe no longer knows), only if the
    account still keeps `missing_id`: of replacements at once the first wins, its id is
    answered."""
    connection()
    item = StripeCustomerItem(keys.account(account_id), "STRIPE#CUSTOMER", customer_id=missing_id)
    try:
        item.update(
            actions=[
                StripeCustomerItem.customer_id.set(customer_id),
                StripeCustomerItem.former_ids.set(
                    (StripeCustomerItem.former_ids | []).append([missing_id])
                ),
            ],
            condition=StripeCustomerItem.customer_id == missing_id,
        )
    except UpdateError as error:
        if not _conditional_failed(error):
            raise
        return customer_of(account_id) or customer_id
    return customer_id


def keep_customer(account_id: str, customer_id: str) -> str:
    """Keep the account's customer; the first one kept wins (its id is answered)."""
    connection()
    item = StripeCustomerItem(keys.account(account_id), "STRIPE#CUSTOMER", customer_id=customer_id)
    try:
        item.save(condition=StripeCustomerItem.pk.does_not_exist())
    except PutError as error:
        if not _conditional_failed(error):
            raise
        kept = customer_of(account_id)
        return kept or customer_id
    return customer_id


# ----------------------------------------------------------------------------- events
def _event_key(event_id: str) -> tuple[str, str]:
    return f"STRIPE#EVENT#{event_id}", "EVENT"


def store_event(
    event_id: str, event_type: str, body: str, *, ignored: bool = False
) -> tuple[bool, bool, datetime]:
    """Store a verified event once: (stored now, applied already, when it was first stored).
    An `ignored` event (a type the worker does not apply) is stored as applied already."""
    connection()
    now = utcnow()
    pk, sk = _event_key(event_id)
    item = StripeEventItem(
        pk,
        sk,
        type=event_type,
        body=body,
        received_at=now,
        expires_at=int((now + timedelta(days=EVENT_DAYS)).timestamp()),
        applied_at=now if ignored else None,
        outcome="ignored" if ignored else None,
    )
    try:
        item.save(condition=StripeEventItem.pk.does_not_exist())
    except PutError as error:
        if not _conditional_failed(error):
            raise
        found = StripeEventItem.get(pk, sk, consistent_read=True)
        return False, found.applied_at is not None, found.received_at
    return True, ignored, now


def get_event(event_id: str) -> StripeEventItem | None:
    connection()
    pk, sk = _event_key(event_id)
    try:
        return StripeEventItem.get(pk, sk, consistent_read=True)
    except DoesNotExist:
        return None


def mark_applied(event_id: str, outcome: str) -> None:
    connection()
    pk, sk = _event_key(event_id)
    StripeEventItem(pk, sk).update(
        actions=[
            StripeEventItem.applied_at.set(utcnow()),
            StripeEventItem.outcome.set(outcome[:500]),
        ]
    )


# ----------------------------------------------------------------------------- payments
def _payment_item(account_id: str, payment: Payment) -> PaymentItem:
    return PaymentItem(
        keys.account(account_id),
        f"PAYMENT#{payment.id}",
        doc=payment.model_dump_json(),
        gsi1_pk=f"PAYMENTS#{payment.created_at:%Y-%m-%d}",
        gsi1_sk=f"{payment.created_at.isoformat()}#{payment.id}",
        gsi2_pk=keys.account_scoped(account_id, "PAYMENTS"),
        gsi2_sk=f"{payment.created_at.isoformat()}#{payment.id}",
    )


def record_payment(account_id: str, payment: Payment) -> Payment:
    """The payment once (a repeat answers the one recorded)."""
    connection()
    try:
        _payment_item(account_id, payment).save(condition=PaymentItem.pk.does_not_exist())
    except PutError as error:
        if not _conditional_failed(error):
            raise
        found = get_payment(account_id, payment.id)
        return found or payment
    return payment


def get_payment(account_id: str, payment_id: str) -> Payment | None:
    connection()
    try:
        item = PaymentItem.get(
            keys.account(account_id), f"PAYMENT#{payment_id}", consistent_read=True
        )
    except DoesNotExist:
        return None
    return Payment.model_validate_json(item.doc)


def update_payment(account_id: str, payment_id: str, **changes: object) -> Payment | None:
    """Change a recorded payment (its refunded or disputed amounts), with optimistic locking."""
    connection()
    for _ in range(5):
        try:
            item = PaymentItem.get(
                keys.account(account_id), f"PAYMENT#{payment_id}", consistent_read=True
            )
        except DoesNotExist:
            return None
        payment = Payment.model_validate_json(item.doc).model_copy(update=changes)
        item.doc = payment.model_dump_json()
        try:
            item.save()
        except PutError as error:
            if _conditional_failed(error):
                continue
            raise
        return payment
    return None


def list_payments(
    account_id: str, *, limit: int, starting_after: str | None
) -> tuple[list[Payment], str | None]:
    from talkturo.store.paging import query_page

    return query_page(
        PaymentItem,
        keys.account_scoped(account_id, "PAYMENTS"),
        convert=lambda item: Payment.model_validate_json(item.doc),
        limit=limit,
        starting_after=starting_after,
        index="GSI2",
    )


def payments_between(start: datetime, end: datetime) -> list[tuple[str, Payment]]:
    """(account id, payment) of every payment created in [start, end], day by day (GSI1)."""
    connection()
    found: list[tuple[str, Payment]] = []
    day = start.date()
    while day <= end.date():
        for item in PaymentItem.gsi1.query(f"PAYMENTS#{day:%Y-%m-%d}"):
            payment = Payment.model_validate_json(item.doc)
            if start <= payment.created_at <= end:
                found.append((item.pk.removeprefix("A#"), payment))
        day += timedelta(days=1)
    return found
