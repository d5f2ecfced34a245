"""The account's auto-reload item (docs/data-model.md):

- AutoReloadItem  PK=A#<acct>  SK=AUTORELOAD  the settings, the state (`armed`, `pending` …),
  the reload `sequence`, the pending reload, the month's reloaded credits and the last failure.

Every change of the state is an UpdateItem conditioned on the state and the sequence read
before it, so of two writers that read the same item one wins and the other learns it lost
(two draws crossing the threshold at once start one reload).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.exceptions import DoesNotExist, PutError, UpdateError
from pynamodb.expressions.condition import Condition

from talkturo.store import keys
from talkturo.store.attributes import DecimalAttribute
from talkturo.store.table import Item, connection

SK = "AUTORELOAD"


class AutoReloadItem(Item):
    enabled = BooleanAttribute(default=False)
    # Both unset until given (settings may be saved before auto-reload is turned on).
    threshold = DecimalAttribute(null=True)
    package = UnicodeAttribute(null=True)
    monthly_cap = DecimalAttribute(null=True)
    state = UnicodeAttribute(default="armed")
    # Reloads started so far: reload n is charged with the idempotency key of n.
    sequence = NumberAttribute(default=0)
    pending_since = UTCDateTimeAttribute(null=True)
    pending_credits = DecimalAttribute(null=True)
    pending_package = UnicodeAttribute(null=True)
    payment_id = UnicodeAttribute(null=True)
    # When an uncharged pending reload's message was last sent again (services.auto_reload).
    requeued_at = UTCDateTimeAttribute(null=True)
    # The month (YYYY-MM, UTC) `month_credits` counts: reloads started in it, bonus included.
    month = UnicodeAttribute(null=True)
    month_credits = DecimalAttribute(default=Decimal)  # Decimal() is 0
    failure_code = UnicodeAttribute(null=True)
    failure_decline_code = UnicodeAttribute(null=True)
    failure_message = UnicodeAttribute(null=True)
    failure_sequence = NumberAttribute(null=True)
    failed_at = UTCDateTimeAttribute(null=True)
    updated_at = UTCDateTimeAttribute(null=True)


def get(account_id: str) -> AutoReloadItem | None:
    connection()
    try:
        return AutoReloadItem.get(keys.account(account_id), SK, consistent_read=True)
    except DoesNotExist:
        return None


def _failed_condition(error: PutError | UpdateError) -> bool:
    return error.cause_response_code == "ConditionalCheckFailedException"


def create(item_values: dict[str, Any]) -> bool:
    """The first settings of an account; False when another writer created them first."""
    connection()
    account_id = item_values.pop("account_id")
    item = AutoReloadItem(keys.account(account_id), SK, **item_values)
    try:
        item.save(condition=AutoReloadItem.pk.does_not_exist())
    except PutError as error:
        if _failed_condition(error):
            return False
        raise
    return True


def transition(
    account_id: str,
    *,
    sequence: int,
    states: Iterable[str],
    actions: list[Any],
    condition: Condition | None = None,
) -> bool:
    """Apply `actions` if the item still has `sequence` and one of `states` (and `condition`);
    False when it changed meanwhile (someone else made the move)."""
    connection()
    expected = AutoReloadItem.sequence == sequence
    expected &= AutoReloadItem.state.is_in(*states)
    if condition is not None:
        expected &= condition
    try:
        AutoReloadItem(keys.account(account_id), SK).update(actions=actions, condition=expected)
    except UpdateError as error:
        if _failed_condition(error):
            return False
        raise
    return True


def start(
    account_id: str,
    *,
    sequence: int,
    state: str,
    now: datetime,
    package: str,
    credits: Decimal,
    month: str,
    month_credits: Decimal,
) -> bool:
    """Claim reload `sequence + 1`: only for the writer that still finds auto-reload on, in
    `state`, at `sequence`. The month's credits count it at once (the cap holds against
    reloads started at the same time)."""
    item = AutoReloadItem
    return transition(
        account_id,
        sequence=sequence,
        states=[state],
        condition=item.enabled == True,  # noqa: E712 - a DynamoDB condition, not a comparison
        actions=[
            item.state.set("pending"),
            item.sequence.set(sequence + 1),
            item.pending_since.set(now),
            item.pending_credits.set(credits),
            item.pending_package.set(package),
            item.payment_id.remove(),
            item.requeued_at.remove(),
            item.month.set(month),
            item.month_credits.set(month_credits + credits),
            item.updated_at.set(now),
        ],
    )
