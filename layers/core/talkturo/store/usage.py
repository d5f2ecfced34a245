"""Usage aggregates: what the ledger's usage entries add up to, per day and per thing paid for.

Items (see docs/data-model.md, "Usage"), all in the partition PK=A#<acct>#USAGE:
- SK=DAY#<yyyy-mm-dd>                  the day's usage
- SK=ASST#<yyyy-mm-dd>#<asst id>       the day's usage of one assistant's calls
- SK=CAMP#<yyyy-mm-dd>#<camp id>       … of one campaign's calls
- SK=PN#<yyyy-mm-dd>#<pn id>           … of one number (its calls and its rent)
- SK=CAMPTOTAL#<camp id>               everything one campaign's calls have cost (its budget)
Each holds `calls` and `numbers`, credits spent (positive), moved only by `ADD` inside the
ledger entry's own transaction (stage), so they count every entry exactly once, with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal

from pynamodb.exceptions import DoesNotExist
from pynamodb.transactions import TransactWrite

from talkturo.domain.usage import GroupBy, UsageTags
from talkturo.store import keys
from talkturo.store.attributes import DecimalAttribute
from talkturo.store.table import Item, connection

GROUP_PREFIX: dict[GroupBy, str] = {
    "day": "DAY#",
    "assistant": "ASST#",
    "campaign": "CAMP#",
    "number": "PN#",
}
CAMPAIGN_TOTAL = "CAMPTOTAL#"


class UsageItem(Item):
    """PK=A#<acct>#USAGE SK=<group>#<day>[#<id>] or CAMPTOTAL#<camp id>."""

    calls = DecimalAttribute(null=True)
    numbers = DecimalAttribute(null=True)


def _credits(value: Decimal | float | None) -> Decimal:
    # DecimalAttribute reads exact Decimals; pynamodb types numbers as floats.
    return Decimal(0) if value is None else Decimal(value)


def partition(account_id: str) -> str:
    return keys.account_scoped(account_id, "USAGE")


def _sort_keys(day: date, tags: UsageTags) -> list[str]:
    found = [f"{GROUP_PREFIX['day']}{day.isoformat()}"]
    for group, key in tags.dimensions().items():
        found.append(f"{GROUP_PREFIX[group]}{day.isoformat()}#{key}")
    if tags.campaign_id:
        found.append(CAMPAIGN_TOTAL + tags.campaign_id)
    return found


def stage(tx: TransactWrite, account_id: str, day: date, tags: UsageTags, spent: Decimal) -> None:
    """Add `spent` credits (negative for a charge given back) to the aggregates `tags` name."""
    pk = partition(account_id)
    attribute = UsageItem.calls if tags.category == "calls" else UsageItem.numbers
    for sk in _sort_keys(day, tags):
        tx.update(UsageItem(pk, sk), actions=[attribute.add(spent)])


def rows(
    account_id: str, group_by: GroupBy, start: date, end: date
) -> Iterator[tuple[str, Decimal, Decimal]]:
    """(day or id, calls, numbers) of every aggregate of the group in start..end; an id comes
    once per day it was used (the caller sums them)."""
    connection()
    prefix = GROUP_PREFIX[group_by]
    low = f"{prefix}{start.isoformat()}"
    # `~` sorts after every character of an id or `#`: the whole last day is included.
    high = f"{prefix}{end.isoformat()}" + ("" if group_by == "day" else "#~")
    for item in UsageItem.query(partition(account_id), UsageItem.sk.between(low, high)):
        rest = str(item.sk).removeprefix(prefix)
        key = rest if group_by == "day" else rest.split("#", 1)[1]
        yield key, _credits(item.calls), _credits(item.numbers)


def campaign_spent(account_id: str, campaign_id: str) -> Decimal:
    """Credits the campaign's calls have drawn so far (strongly consistent)."""
    connection()
    try:
        item = UsageItem.get(
            partition(account_id), CAMPAIGN_TOTAL + campaign_id, consistent_read=True
        )
    except DoesNotExist:
        return Decimal(0)
    return _credits(item.calls) + _credits(item.numbers)
