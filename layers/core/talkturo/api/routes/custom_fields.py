"""Custom field definitions of contacts and companies."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from talkturo.api.deps import Caller, IdempotencyKey, Paging
from talkturo.api.idempotency import create_once
from talkturo.api.openapi import errors_at
from talkturo.domain.common import Page
from talkturo.domain.custom_fields import CustomField, CustomFieldCreate, CustomFieldUpdate, Entity
from talkturo.services import custom_fields

router = APIRouter(tags=["Custom fields"])


@router.post(
    "/custom-fields",
    response_model=CustomField,
    status_code=201,
    summary="Define a custom field of contacts or companies",
)
def create_custom_field(
    caller: Caller, body: CustomFieldCreate, idempotency_key: IdempotencyKey = None
) -> Any:
    return create_once(
        account_id=caller.account_id,
        key=idempotency_key,
        route="POST /v1/custom-fields",
        body=body,
        work=lambda: custom_fields.create(caller.account_id, body),
    )


@router.get(
    "/custom-fields", response_model=Page[CustomField], summary="List custom fields, newest first"
)
def list_custom_fields(
    caller: Caller,
    paging: Paging,
    entity: Annotated[Entity | None, Query(description="Only fields of this entity.")] = None,
) -> Page[CustomField]:
    return custom_fields.list_fields(
        caller.account_id, entity=entity, limit=paging.limit, starting_after=paging.starting_after
    )


@router.get("/custom-fields/{field_id}", response_model=CustomField, summary="Get a custom field")
def get_custom_field(caller: Caller, field_id: str) -> CustomField:
    return custom_fields.get(caller.account_id, field_id)


@router.patch(
    "/custom-fields/{field_id}",
    responses=errors_at(409),
    response_model=CustomField,
    summary="Change a custom field's label or options (its type is fixed)",
)
def update_custom_field(caller: Caller, field_id: str, changes: CustomFieldUpdate) -> CustomField:
    return custom_fields.update(caller.account_id, field_id, changes)


@router.delete(
    "/custom-fields/{field_id}",
    responses=errors_at(409),
    response_model=CustomField,
    summary="Delete a custom field (stored values stay until overwritten)",
)
def delete_custom_field(caller: Caller, field_id: str) -> CustomField:
    return custom_fields.delete(caller.account_id, field_id)
