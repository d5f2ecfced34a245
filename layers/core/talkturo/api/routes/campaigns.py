"""Campaigns: batch outbound calling over CRM contacts (docs/campaigns.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from talkturo.api.deps import Caller, IdempotencyKey, Paging
from talkturo.api.idempotency import create_once
from talkturo.api.openapi import errors_at
from talkturo.domain.budgets import CampaignForecast
from talkturo.domain.campaigns import (
    Campaign,
    CampaignContact,
    CampaignCreate,
    CampaignProgress,
    CampaignStatus,
    CampaignUpdate,
    ContactState,
)
from talkturo.domain.common import Page
from talkturo.services import campaign_budgets, campaigns

router = APIRouter(tags=["Campaigns"])


@router.post(
    "/campaigns",
    responses=errors_at(404, 409),
    response_model=Campaign,
    status_code=201,
    summary="Create a campaign (a draft; its audience is gathered in the background)",
)
def create_campaign(
    caller: Caller, body: CampaignCreate, idempotency_key: IdempotencyKey = None
) -> Any:
    return create_once(
        account_id=caller.account_id,
        key=idempotency_key,
        route="POST /v1/campaigns",
        body=body,
        work=lambda: campaigns.create(caller.account_id, body),
    )


@router.get("/campaigns", response_model=Page[Campaign], summary="List campaigns, newest first")
def list_campaigns(
    caller: Caller, paging: Paging, status: CampaignStatus | None = None
) -> Page[Campaign]:
    return campaigns.list_campaigns(
        caller.account_id, limit=paging.limit, starting_after=paging.starting_after, status=status
    )


@router.get("/campaigns/{campaign_id}", response_model=Campaign, summary="A campaign")
def get_campaign(caller: Caller, campaign_id: str) -> Campaign:
    return campaigns.get(caller.account_id, campaign_id)


@router.patch(
    "/campaigns/{campaign_id}",
    responses=errors_at(409),
    response_model=Campaign,
    summary="Change a campaign (window, retries, limits and numbers only while draft or paused)",
)
def update_campaign(caller: Caller, campaign_id: str, body: CampaignUpdate) -> Campaign:
    return campaigns.update(caller.account_id, campaign_id, body)


@router.delete(
    "/campaigns/{campaign_id}",
    responses=errors_at(409),
    response_model=Campaign,
    summary="Delete a draft, completed or cancelled campaign",
)
def delete_campaign(caller: Caller, campaign_id: str) -> Campaign:
    return campaigns.delete(caller.account_id, campaign_id)


@router.post(
    "/campaigns/{campaign_id}/start",
    responses=errors_at(402, 409),
    response_model=Campaign,
    summary="Start now, or schedule for scheduled_start_at when it is ahead",
)
def start_campaign(caller: Caller, campaign_id: str) -> Campaign:
    return campaigns.start(caller.account_id, campaign_id)


@router.post(
    "/campaigns/{campaign_id}/pause",
    responses=errors_at(409),
    response_model=Campaign,
    summary="Pause: no new dials; calls under way finish",
)
def pause_campaign(caller: Caller, campaign_id: str) -> Campaign:
    return campaigns.pause(caller.account_id, campaign_id)


@router.post(
    "/campaigns/{campaign_id}/resume",
    responses=errors_at(402, 409),
    response_model=Campaign,
    summary="Resume a paused campaign",
)
def resume_campaign(caller: Caller, campaign_id: str) -> Campaign:
    return campaigns.resume(caller.account_id, campaign_id)


@router.post(
    "/campaigns/{campaign_id}/cancel",
    responses=errors_at(409),
    response_model=Campaign,
    summary="Cancel (from any status but completed or cancelled)",
)
def cancel_campaign(caller: Caller, campaign_id: str) -> Campaign:
    return campaigns.cancel(caller.account_id, campaign_id)


@router.get(
    "/campaigns/{campaign_id}/progress",
    response_model=CampaignProgress,
    summary="Live progress: counts, outcomes, rates, calls in flight, the queue, recent calls",
)
def campaign_progress(caller: Caller, campaign_id: str) -> CampaignProgress:
    return campaigns.progress(caller.account_id, campaign_id)


@router.get(
    "/campaigns/{campaign_id}/forecast",
    response_model=CampaignForecast,
    summary="What the contacts still to call should cost and how long they take; whether the "
    "balance and the credit cap cover it",
)
def campaign_forecast(caller: Caller, campaign_id: str) -> CampaignForecast:
    return campaign_budgets.forecast_of(caller.account_id, campaign_id)


@router.get(
    "/campaigns/{campaign_id}/contacts",
    response_model=Page[CampaignContact],
    summary="The campaign's contacts with their state and attempts (by contact id)",
)
def list_campaign_contacts(
    caller: Caller,
    campaign_id: str,
    paging: Paging,
    state: Annotated[ContactState | None, Query()] = None,
) -> Page[CampaignContact]:
    return campaigns.list_contacts(
        caller.account_id,
        campaign_id,
        state=state,
        limit=paging.limit,
        starting_after=paging.starting_after,
    )


@router.get(
    "/campaigns/{campaign_id}/contacts/{contact_id}",
    response_model=CampaignContact,
    summary="One campaign contact with its attempt history and the audit of each dial",
)
def get_campaign_contact(caller: Caller, campaign_id: str, contact_id: str) -> CampaignContact:
    return campaigns.get_contact(caller.account_id, campaign_id, contact_id)
