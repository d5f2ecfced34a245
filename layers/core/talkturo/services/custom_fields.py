"""Custom field definitions, and checking the values contacts and companies give for them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from talkturo.domain.common import Page, utcnow
from talkturo.domain.custom_fields import (
    MAX_DEFINITIONS_PER_ENTITY,
    CustomField,
    CustomFieldCreate,
    CustomFieldUpdate,
    CustomValueError,
    Entity,
    validate_custom,
)
from talkturo.errors import Conflict, InvalidRequest
from talkturo.ids import new_id
from talkturo.store import custom_fields as store


def create(account_id: str, data: CustomFieldCreate) -> CustomField:
    if len(store.for_entity(account_id, data.entity)) >= MAX_DEFINITIONS_PER_ENTITY:
        raise InvalidRequest(
            f"at most {MAX_DEFINITIONS_PER_ENTITY} custom fields per entity", param="key"
        )
    now = utcnow()
    field = CustomField(
        id=new_id("custom_field"), created_at=now, updated_at=now, **data.model_dump()
    )
    store.create(account_id, field)
    return field


def get(account_id: str, field_id: str) -> CustomField:
    return store.get(account_id, field_id)


def list_fields(
    account_id: str, *, entity: Entity | None, limit: int, starting_after: str | None
) -> Page[CustomField]:
    data, cursor = store.list_page(
        account_id, entity=entity, limit=limit, starting_after=starting_after
    )
    return Page[CustomField](data=data, has_more=cursor is not None, next_cursor=cursor)


def update(account_id: str, field_id: str, changes: CustomFieldUpdate) -> CustomField:
    given = changes.model_dump(exclude_unset=True)

    def change(field: CustomField) -> CustomField:
        if given.get("type", field.type) != field.type:
            raise Conflict(
                f"a custom field's type cannot change (it is {field.type}); "
                "create a new field instead",
                param="type",
            )
        if "options" in given and field.type != "select":
            raise InvalidRequest("only select fields have options", param="options")
        updates = {k: v for k, v in given.items() if k in ("label", "options")}
        return field.model_copy(update={**updates, "updated_at": utcnow()})

    return store.update(account_id, field_id, change)


def delete(account_id: str, field_id: str) -> CustomField:
    """Remove a definition; values already stored under its key stay until overwritten."""
    return store.delete(account_id, field_id)


def definitions(account_id: str, entity: Entity) -> list[CustomField]:
    return store.for_entity(account_id, entity)


def check_values(fields: list[CustomField], values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` validated and made canonical against `fields`; InvalidRequest naming
    `custom.<key>` otherwise."""
    try:
        return validate_custom(fields, values)
    except CustomValueError as error:
        raise InvalidRequest(error.message, param=error.param) from None
