"""Contacts of the CRM."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from talkturo.api.deps import Caller, IdempotencyKey, Paging
from talkturo.api.idempotency import create_once
from talkturo.api.openapi import errors_at
from talkturo.domain.common import Page
from talkturo.domain.contacts import (
    Contact,
    ContactActivity,
    ContactCreate,
    ContactFilters,
    ContactUpdate,
    LeadStatus,
)
from talkturo.services import contacts

router = APIRouter(tags=["Contacts"])


@router.post(
    "/contacts",
    response_model=Contact,
    status_code=201,
    summary="Create a contact (a primary phone number is unique per account)",
)
def create_contact(
    caller: Caller, body: ContactCreate, idempotency_key: IdempotencyKey = None
) -> Any:
    return create_once(
        account_id=caller.account_id,
        key=idempotency_key,
        route="POST /v1/contacts",
        body=body,
        work=lambda: contacts.create(caller.account_id, body),
    )


@router.get(
    "/contacts",
    response_model=Page[Contact],
    summary="List and search contacts, newest first (a search lists by the matched name)",
)
def list_contacts(
    caller: Caller,
    paging: Paging,
    company_id: Annotated[str | None, Query(description="Only this company's contacts.")] = None,
    lead_status: Annotated[LeadStatus | None, Query(description="Only this lead status.")] = None,
    do_not_call: Annotated[
        bool | None,
        Query(description="Only contacts that may (false) or may not (true) be called."),
    ] = None,
    tag: Annotated[
        str | None, Query(max_length=50, description="Only contacts with this tag.")
    ] = None,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=100,
            description="Start of a first name, last name, full name, email or phone number.",
        ),
    ] = None,
) -> Page[Contact]:
    filters = ContactFilters(
        company_id=company_id, lead_status=lead_status, do_not_call=do_not_call, tag=tag, q=q
    )
    return contacts.list_contacts(
        caller.account_id, filters, limit=paging.limit, starting_after=paging.starting_after
    )


@router.get("/contacts/{contact_id}", response_model=Contact, summary="Get a contact")
def get_contact(caller: Caller, contact_id: str) -> Contact:
    return contacts.get(caller.account_id, contact_id)


@router.get(
    "/contacts/{contact_id}/activity",
    response_model=Page[ContactActivity],
    summary="What happened to a contact on calls (opt-outs), newest call first",
)
def list_contact_activity(caller: Caller, contact_id: str, paging: Paging) -> Page[ContactActivity]:
    return contacts.list_activity(
        caller.account_id, contact_id, limit=paging.limit, starting_after=paging.starting_after
    )


@router.patch(
    "/contacts/{contact_id}",
    responses=errors_at(409),
    response_model=Contact,
    summary="Change a contact (lead_status dnc and do_not_call move together)",
)
def update_contact(caller: Caller, contact_id: str, changes: ContactUpdate) -> Contact:
    return contacts.update(caller.account_id, contact_id, changes)


@router.delete(
    "/contacts/{contact_id}",
    response_model=Contact,
    responses=errors_at(409),
    summary="Delete a contact",
)
def delete_contact(caller: Caller, contact_id: str) -> Contact:
    return contacts.delete(caller.account_id, contact_id)
