"""Custom field definitions.

Items (see docs/data-model.md):
- Definition PK=A#<acct> SK=CF#<entity>#<key>: the document. The key makes a field key unique
  per entity, and one query (`begins_with CF#<entity>#`) loads an entity's whole schema, which
  every contact or company write validates against.
- Id pointer PK=A#<acct> SK=CFID#<cf id> -> entity, key: reaches a definition by its id, and
  lists definitions newest first.
"""

from __future__ import annotations

from collections.abc import Callable

from pynamodb.attributes import UnicodeAttribute
from pynamodb.exceptions import DoesNotExist

from talkturo.domain.custom_fields import CustomField, Entity
from talkturo.errors import Conflict, NotFound
from talkturo.store import keys
from talkturo.store.paging import query_page
from talkturo.store.table import Document, Item, connection
from talkturo.store.transact import Contention, Refused, Writes

PREFIX = "CF#"
ID_PREFIX = "CFID#"


class CustomFieldItem(Document):
    """PK=A#<acct> SK=CF#<entity>#<key>."""


class CustomFieldIdItem(Item):
    """PK=A#<acct> SK=CFID#<cf id>."""

    entity = UnicodeAttribute()
    key = UnicodeAttribute()


def _sk(entity: str, key: str) -> str:
    return f"{PREFIX}{entity}#{key}"


def _of(item: CustomFieldItem) -> CustomField:
    return CustomField.model_validate_json(item.doc)


def create(account_id: str, field: CustomField) -> None:
    pk = keys.account(account_id)
    writes = Writes()
    writes.put(
        "definition",
        CustomFieldItem(pk, _sk(field.entity, field.key), doc=field.model_dump_json()),
        CustomFieldItem.pk.does_not_exist(),
    )
    writes.put(
        "pointer",
        CustomFieldIdItem(pk, f"{ID_PREFIX}{field.id}", entity=field.entity, key=field.key),
        CustomFieldIdItem.pk.does_not_exist(),
    )
    try:
        writes.commit()
    except Refused as refused:
        if "definition" in refused.labels:
            raise Conflict(
                f"a {field.entity} custom field with key {field.key!r} already exists",
                param="key",
            ) from None
        raise
    except Contention as error:
        raise Conflict("the custom field changed at the same time; try again") from error


def _item(account_id: str, field_id: str) -> CustomFieldItem:
    connection()
    pk = keys.account(account_id)
    try:
        pointer = CustomFieldIdItem.get(pk, f"{ID_PREFIX}{field_id}", consistent_read=True)
        return CustomFieldItem.get(pk, _sk(pointer.entity, pointer.key), consistent_read=True)
    except DoesNotExist:
        raise NotFound("no such custom field", param="id") from None


def get(account_id: str, field_id: str) -> CustomField:
    return _of(_item(account_id, field_id))


def for_entity(account_id: str, entity: Entity) -> list[CustomField]:
    """Every definition of an entity, by key."""
    connection()
    items = CustomFieldItem.query(
        keys.account(account_id),
        CustomFieldItem.sk.startswith(f"{PREFIX}{entity}#"),
        consistent_read=True,
    )
    return [_of(item) for item in items]


def list_page(
    account_id: str, *, entity: Entity | None, limit: int, starting_after: str | None
) -> tuple[list[CustomField], str | None]:
    pk = keys.account(account_id)
    pointers, cursor = query_page(
        CustomFieldIdItem,
        pk,
        convert=lambda item: (item.entity, item.key),
        limit=limit,
        starting_after=starting_after,
        range_key_condition=CustomFieldIdItem.sk.startswith(ID_PREFIX),
        filter_condition=(CustomFieldIdItem.entity == entity) if entity else None,
    )
    found = {
        (field.entity, field.key): field
        for field in map(_of, CustomFieldItem.batch_get([(pk, _sk(e, k)) for e, k in pointers]))
    }
    return [found[p] for p in pointers if p in found], cursor


def update(
    account_id: str, field_id: str, change: Callable[[CustomField], CustomField]
) -> CustomField:
    item = _item(account_id, field_id)
    after = change(_of(item))
    item.doc = after.model_dump_json()
    writes = Writes()
    writes.put("definition", item)
    try:
        writes.commit()
    except (Refused, Contention) as error:
        raise Conflict("the custom field changed at the same time; try again") from error
    return after


def delete(account_id: str, field_id: str) -> CustomField:
    item = _item(account_id, field_id)
    field = _of(item)
    writes = Writes()
    writes.delete("definition", item)
    writes.delete(
        "pointer",
        CustomFieldIdItem(keys.account(account_id), f"{ID_PREFIX}{field_id}"),
        add_version_condition=False,
    )
    try:
        writes.commit()
    except (Refused, Contention) as error:
        raise Conflict("the custom field changed at the same time; try again") from error
    return field
