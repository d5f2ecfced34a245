"""Usage: what the account's credits were spent on, by day, assistant, campaign and number.

A usage entry of the ledger (a call's draw, a number's rent) carries tags saying what it paid
for; the ledger's write adds its amount to per-day aggregates in the same transaction, so a
report reads a few aggregate items per day, never the ledger itself (docs/data-model.md,
"Usage"). Days are UTC days.

Pure: no I/O.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from talkturo.domain.common import Credits

UsageCategory = Literal["calls", "numbers"]
GroupBy = Literal["day", "assistant", "campaign", "number"]
GROUPS: tuple[GroupBy, ...] = ("day", "assistant", "campaign", "number")
# The longest report one request may ask for (days, both ends included).
MAX_REPORT_DAYS = 366
# The default report: this many days up to today.
DEFAULT_REPORT_DAYS = 30


class UsageTags(BaseModel):
    """What a usage entry paid for: a call (its assistant, campaign, number) or a number's rent."""

    category: UsageCategory
    assistant_id: str | None = None
    campaign_id: str | None = None
    phone_number_id: str | None = None

    def dimensions(self) -> dict[GroupBy, str]:
        """The groups besides the day this usage counts in, with the id it counts under."""
        found: dict[GroupBy, str] = {}
        if self.assistant_id:
            found["assistant"] = self.assistant_id
        if self.campaign_id:
            found["campaign"] = self.campaign_id
        if self.phone_number_id:
            found["number"] = self.phone_number_id
        return found


class UsageRow(BaseModel):
    object: Literal["usage_row"] = "usage_row"
    key: str = Field(
        description="The day (YYYY-MM-DD, UTC), or the assistant, campaign or phone number id."
    )
    credits: Credits = Field(description="Everything spent in this group.")
    call_credits: Credits = Field(description="Spent on call minutes.")
    number_credits: Credits = Field(description="Spent on phone number rent (and setup).")


class UsageReport(BaseModel):
    object: Literal["usage_report"] = "usage_report"
    from_date: date = Field(serialization_alias="from", description="First day, UTC.")
    to_date: date = Field(serialization_alias="to", description="Last day, UTC (included).")
    group_by: GroupBy
    credits: Credits = Field(description="Everything spent in the period.")
    call_credits: Credits
    number_credits: Credits
    data: list[UsageRow] = Field(
        description="Days in order; assistants, campaigns and numbers by credits, highest first."
    )


def report_range(start: date | None, end: date | None, today: date) -> tuple[date, date]:
    """The days a report covers: `start`..`end` (defaults: the 30 days up to today).
    ValueError naming the parameter (`from` or `to`) when the range cannot be reported."""
    end = end or today
    start = start or end - timedelta(days=DEFAULT_REPORT_DAYS - 1)
    if start > end:
        raise ValueError("to: must be on or after from")
    if (end - start).days + 1 > MAX_REPORT_DAYS:
        raise ValueError(f"from: a report covers at most {MAX_REPORT_DAYS} days")
    return start, end


def row(key: str, calls: Decimal, numbers: Decimal) -> UsageRow:
    return UsageRow(key=key, credits=calls + numbers, call_credits=calls, number_credits=numbers)


def ordered(group_by: GroupBy, rows: list[UsageRow]) -> list[UsageRow]:
    if group_by == "day":
        return sorted(rows, key=lambda r: r.key)
    return sorted(rows, key=lambda r: (-r.credits, r.key))
