"""Campaign budgets: the forecast (`GET /v1/campaigns/{id}/forecast`), the budget shown in a
campaign's progress, and the cap the dispatcher obeys (domain.budgets has the rules).

What a campaign has spent is its usage aggregate (store.usage, `CAMPTOTAL#<id>`), written by
the ledger transactions of its calls' draws: one GetItem, exact.
"""

from __future__ import annotations

from decimal import Decimal

from talkturo.domain.assistants import AssistantRecord, estimate_of
from talkturo.domain.budgets import (
    HISTORY_CALLS,
    CallHistory,
    CampaignForecast,
    CapDecision,
    budget_of,
    burn_rate,
    cap_decision,
    forecast,
    history_of,
)
from talkturo.domain.campaigns import Campaign, CampaignBudget, CampaignCounters, outcome_of
from talkturo.domain.catalog import get_catalog
from talkturo.domain.common import utcnow
from talkturo.ids import has_prefix
from talkturo.services import assistants, credits, usage
from talkturo.store import calls as call_store
from talkturo.store import campaigns as store

# How many of a running campaign's latest calls its burn rate is measured over.
BURN_CALLS = 20


def rate_of(assistant: AssistantRecord) -> Decimal:
    return estimate_of(assistant, get_catalog()).total


def history(account_id: str) -> CallHistory:
    """How the account's latest ended outbound calls ended and how long they were billed."""
    records, _ = call_store.list_page(
        account_id,
        limit=HISTORY_CALLS,
        starting_after=None,
        filters={"direction": "outbound"},
    )
    return history_of(
        (outcome_of(r.outcome), int(r.billed_seconds or 0)) for r in records if r.status == "ended"
    )


def _to_call(campaign: Campaign, counters: CampaignCounters) -> int:
    if campaign.status in ("draft", "scheduled"):
        return max(0, counters.audience_total - counters.counts.get("skipped", 0))
    return max(0, sum(counters.counts.get(s, 0) for s in ("pending", "queued", "calling")))


def forecast_of(account_id: str, campaign_id: str) -> CampaignForecast:
    if not has_prefix(campaign_id, "campaign"):
        from talkturo.errors import NotFound

        raise NotFound("no such campaign", param="id")
    campaign, _ = store.get(account_id, campaign_id)
    counters = store.counters(account_id, campaign_id)
    assistant = assistants.get_record(account_id, campaign.assistant_id)
    return forecast(
        campaign,
        contacts=_to_call(campaign, counters),
        rate_per_minute=rate_of(assistant),
        history=history(account_id),
        balance=credits.balance(account_id).balance,
        spent=usage.campaign_spent(account_id, campaign_id),
    )


def budget(account_id: str, campaign: Campaign, counters: CampaignCounters) -> CampaignBudget:
    """Spent, remaining, burn rate over the latest calls, and the ETA at that rate."""
    spent = usage.campaign_spent(account_id, campaign.id)
    records, _ = call_store.list_page(
        account_id, limit=BURN_CALLS, starting_after=None, filters={"campaign_id": campaign.id}
    )
    now = utcnow()
    rate = None
    if campaign.status == "running":
        rate = burn_rate([(r.created_at, r.credits_charged or Decimal(0)) for r in records], now)
    left = Decimal(0)
    if rate is not None:
        assistant = assistants.get_record(account_id, campaign.assistant_id)
        left = forecast(
            campaign,
            contacts=_to_call(campaign, counters),
            rate_per_minute=rate_of(assistant),
            history=history(account_id),
            balance=Decimal(0),
            spent=spent,
        ).credits
    return budget_of(campaign.credit_cap, spent, rate, left, now)


def cap_check(
    account_id: str, campaign: Campaign, in_flight: int, assistant: AssistantRecord
) -> CapDecision:
    """May the dispatcher place another call under the campaign's cap?"""
    if campaign.credit_cap is None:
        return "dial"
    spent = usage.campaign_spent(account_id, campaign.id)
    return cap_decision(campaign.credit_cap, spent, in_flight, rate_of(assistant))


def cap_reached(account_id: str, campaign: Campaign) -> bool:
    return (
        campaign.credit_cap is not None
        and usage.campaign_spent(account_id, campaign.id) >= campaign.credit_cap
    )
