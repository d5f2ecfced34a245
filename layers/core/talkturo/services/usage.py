"""Usage reports (`GET /v1/credits/usage`) and the tags a call's ledger entries carry.

The aggregates are written by the ledger's own transactions (store.usage), so a report over a
month reads about one item per day and per thing used, never the ledger's entries.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import date
from decimal import Decimal

from talkturo.domain.common import quantize_credits, utcnow
from talkturo.domain.usage import GroupBy, UsageReport, UsageTags, ordered, report_range, row
from talkturo.errors import InvalidRequest, NotFound
from talkturo.store import usage as store

# Calls whose tags were read (a call's assistant, campaign and number never change): one read
# per call in a process, not one per 10-second draw.
_CACHE_SIZE = 2048
_call_tags: OrderedDict[tuple[str, str], UsageTags] = OrderedDict()
_lock = threading.Lock()


def report(
    account_id: str, *, start: date | None, end: date | None, group_by: GroupBy
) -> UsageReport:
    try:
        first, last = report_range(start, end, utcnow().date())
    except ValueError as error:
        param, _, message = str(error).partition(": ")
        raise InvalidRequest(f"{param}: {message}", param=param) from None
    sums: dict[str, tuple[Decimal, Decimal]] = {}
    for key, calls, numbers in store.rows(account_id, group_by, first, last):
        before = sums.get(key, (Decimal(0), Decimal(0)))
        sums[key] = (before[0] + calls, before[1] + numbers)
    rows = [
        row(key, quantize_credits(calls), quantize_credits(numbers))
        for key, (calls, numbers) in sums.items()
        if calls or numbers
    ]
    if group_by == "day":
        days = rows
    else:
        days = [
            row(key, calls, numbers)
            for key, calls, numbers in store.rows(account_id, "day", first, last)
        ]
    calls_total = quantize_credits(sum((r.call_credits for r in days), Decimal(0)))
    numbers_total = quantize_credits(sum((r.number_credits for r in days), Decimal(0)))
    return UsageReport(
        from_date=first,
        to_date=last,
        group_by=group_by,
        credits=calls_total + numbers_total,
        call_credits=calls_total,
        number_credits=numbers_total,
        data=ordered(group_by, rows),
    )


def call_tags(account_id: str, call_id: str) -> UsageTags:
    """What a call's usage counts under: its assistant, campaign and number."""
    with _lock:
        found = _call_tags.get((account_id, call_id))
        if found is not None:
            _call_tags.move_to_end((account_id, call_id))
            return found
    from talkturo.services import calls

    try:
        record = calls.get_record(account_id, call_id)
    except NotFound:
        return UsageTags(category="calls")  # not cached: the record may appear
    tags = UsageTags(
        category="calls",
        assistant_id=record.assistant_id,
        campaign_id=record.campaign_id,
        phone_number_id=record.phone_number_id,
    )
    with _lock:
        _call_tags[(account_id, call_id)] = tags
        while len(_call_tags) > _CACHE_SIZE:
            _call_tags.popitem(last=False)
    return tags


def campaign_spent(account_id: str, campaign_id: str) -> Decimal:
    return quantize_credits(store.campaign_spent(account_id, campaign_id))
