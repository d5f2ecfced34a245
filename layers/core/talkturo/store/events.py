"""Webhook endpoints, events and their deliveries.

Items (see docs/data-model.md):
- Endpoint  PK=A#<acct> SK=WHE#<whe id>: the document with its signing secrets (optimistic
            `version`). One query (`begins_with WHE#`) reads an account's endpoints: what
            every `emit` costs when the account has none.
- Event     PK=A#<acct> SK=EVT#<evt id>: the exact body sent (`body`) and `type`; written with
            `attribute_not_exists`, and the event id derives from the emitter's key, so an
            event is written once however often it is emitted. Expires after 30 days.
- Delivery  PK=A#<acct> SK=WHD#<whe id>#<dlv id>: the document (status, attempts and their
            log; optimistic `version`). While pending it is in the due index: GSI1
            `EVENTS#DUE#<shard>` / `<due iso>#<acct>#<whe id>#<dlv id>` (4 shards, so no
            single index partition takes every delivery). Expires after 30 days.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from pynamodb.attributes import UnicodeAttribute
from pynamodb.exceptions import DeleteError, DoesNotExist, PutError

from talkturo.domain.events import (
    EndpointRecord,
    Event,
    WebhookDelivery,
    retention_until,
)
from talkturo.errors import Conflict, NotFound
from talkturo.store import keys
from talkturo.store.paging import query_page
from talkturo.store.table import Document, Item, connection
from talkturo.store.transact import Contention, Refused, Writes

ENDPOINT = "WHE#"
EVENT = "EVT#"
DELIVERY = "WHD#"
DUE = "EVENTS#DUE#"
DUE_SHARDS = 4


class Stale(Exception):
    """Another write changed the item since it was read."""


class EndpointItem(Document):
    """PK=A#<acct> SK=WHE#<whe id>."""


class EventItem(Item):
    """PK=A#<acct> SK=EVT#<evt id>."""

    type = UnicodeAttribute()
    body = UnicodeAttribute()


class DeliveryItem(Document):
    """PK=A#<acct> SK=WHD#<whe id>#<dlv id>."""

    status = UnicodeAttribute()


def _due_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _shard(delivery_id: str) -> int:
    return zlib.crc32(delivery_id.encode()) % DUE_SHARDS


# --------------------------------------------------------------------------- endpoints


def _endpoint_of(item: EndpointItem) -> EndpointRecord:
    return EndpointRecord.model_validate_json(item.doc)


def endpoints(account_id: str) -> list[EndpointRecord]:
    """Every endpoint of the account (at most a few dozen), oldest first."""
    connection()
    return [
        _endpoint_of(item)
        for item in EndpointItem.query(
            keys.account(account_id), EndpointItem.sk.startswith(ENDPOINT)
        )
    ]


def create_endpoint(account_id: str, record: EndpointRecord) -> None:
    connection()
    item = EndpointItem(
        keys.account(account_id), f"{ENDPOINT}{record.id}", doc=record.model_dump_json()
    )
    item.save(EndpointItem.pk.does_not_exist())


def get_endpoint(account_id: str, endpoint_id: str) -> tuple[EndpointRecord, int]:
    connection()
    try:
        item = EndpointItem.get(
            keys.account(account_id), f"{ENDPOINT}{endpoint_id}", consistent_read=True
        )
    except DoesNotExist:
        raise NotFound("no such webhook endpoint", param="id") from None
    return _endpoint_of(item), int(item.version or 0)


def save_endpoint(account_id: str, record: EndpointRecord, version: int) -> None:
    """Write the endpoint if it is still at `version` (Stale otherwise, NotFound when gone)."""
    connection()
    item = EndpointItem(
        keys.account(account_id),
        f"{ENDPOINT}{record.id}",
        doc=record.model_dump_json(),
        version=version,
    )
    try:
        item.save()
    except PutError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            raise Stale from None
        raise


def delete_endpoint(account_id: str, endpoint_id: str) -> None:
    connection()
    item = EndpointItem(keys.account(account_id), f"{ENDPOINT}{endpoint_id}")
    try:
        item.delete(EndpointItem.pk.exists(), add_version_condition=False)
    except DeleteError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            raise NotFound("no such webhook endpoint", param="id") from None
        raise


def list_endpoints(
    account_id: str, *, limit: int, starting_after: str | None
) -> tuple[list[EndpointRecord], str | None]:
    return query_page(
        EndpointItem,
        keys.account(account_id),
        convert=_endpoint_of,
        limit=limit,
        starting_after=starting_after,
        range_key_condition=EndpointItem.sk.startswith(ENDPOINT),
    )


# --------------------------------------------------------------------------- events


def _delivery_item(
    account_id: str,
    delivery: WebhookDelivery,
    version: int | None,
    *,
    due_in: timedelta | None = None,
    due_from: datetime | None = None,
) -> DeliveryItem:
    """The item; a pending delivery is due at `next_attempt_at` (or `due_from`) plus `due_in`
    (the lease while a message for it is on the queue)."""
    item = DeliveryItem(
        keys.account(account_id),
        f"{DELIVERY}{delivery.endpoint_id}#{delivery.id}",
        doc=delivery.model_dump_json(),
        status=delivery.status,
        expires_at=retention_until(delivery.created_at),
    )
    if version is not None:
        item.version = version
    base = due_from or delivery.next_attempt_at
    if delivery.status == "pending" and base is not None:
        due = base + (due_in or timedelta(0))
        item.gsi1_pk = f"{DUE}{_shard(delivery.id)}"
        item.gsi1_sk = f"{_due_time(due)}#{account_id}#{delivery.endpoint_id}#{delivery.id}"
    return item


def create_event(
    account_id: str,
    event: Event,
    deliveries: list[WebhookDelivery],
    *,
    due_in: timedelta | None = None,
) -> bool:
    """Write the event and its deliveries together; False when the event exists already (it
    was emitted before: nothing is written)."""
    pk = keys.account(account_id)
    writes = Writes()
    writes.put(
        "event",
        EventItem(
            pk,
            f"{EVENT}{event.id}",
            type=event.type,
            body=event.body(),
            expires_at=retention_until(event.created_at),
        ),
        EventItem.pk.does_not_exist(),
    )
    for delivery in deliveries:
        writes.put("delivery", _delivery_item(account_id, delivery, None, due_in=due_in))
    try:
        writes.commit()
    except Refused as refused:
        if "event" in refused.labels:
            return False
        raise
    except Contention:
        # The same event being written at the same moment by another emitter: it lands once.
        return False
    return True


def event_body(account_id: str, event_id: str) -> str | None:
    connection()
    try:
        item = EventItem.get(keys.account(account_id), f"{EVENT}{event_id}", consistent_read=True)
    except DoesNotExist:
        return None
    return str(item.body)


def event_bodies(account_id: str, event_ids: set[str]) -> dict[str, str]:
    connection()
    pk = keys.account(account_id)
    found: dict[str, str] = {}
    for item in EventItem.batch_get([(pk, f"{EVENT}{event_id}") for event_id in event_ids]):
        found[item.sk.removeprefix(EVENT)] = str(item.body)
    return found


# --------------------------------------------------------------------------- deliveries


def get_delivery(
    account_id: str, endpoint_id: str, delivery_id: str
) -> tuple[WebhookDelivery, int]:
    connection()
    try:
        item = DeliveryItem.get(
            keys.account(account_id),
            f"{DELIVERY}{endpoint_id}#{delivery_id}",
            consistent_read=True,
        )
    except DoesNotExist:
        raise NotFound("no such delivery", param="delivery_id") from None
    return WebhookDelivery.model_validate_json(item.doc), int(item.version or 0)


def save_delivery(
    account_id: str,
    delivery: WebhookDelivery,
    version: int,
    *,
    due_in: timedelta | None = None,
    due_from: datetime | None = None,
) -> None:
    """Write the delivery if it is still at `version` (Stale otherwise)."""
    connection()
    try:
        _delivery_item(account_id, delivery, version, due_in=due_in, due_from=due_from).save()
    except PutError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            raise Stale from None
        raise


def list_deliveries(
    account_id: str,
    endpoint_id: str,
    *,
    status: str | None,
    limit: int,
    starting_after: str | None,
) -> tuple[list[WebhookDelivery], str | None]:
    return query_page(
        DeliveryItem,
        keys.account(account_id),
        convert=lambda item: WebhookDelivery.model_validate_json(item.doc),
        limit=limit,
        starting_after=starting_after,
        range_key_condition=DeliveryItem.sk.startswith(f"{DELIVERY}{endpoint_id}#"),
        filter_condition=(DeliveryItem.status == status) if status else None,
    )


def due(now: datetime, *, limit: int) -> Iterator[tuple[str, str, str]]:
    """(account, endpoint, delivery) of pending deliveries due by `now`, most overdue first
    within each shard; at most `limit` per shard."""
    connection()
    bound = _due_time(now)
    for shard in range(DUE_SHARDS):
        for item in DeliveryItem.gsi1.query(
            f"{DUE}{shard}", DeliveryItem.gsi1_sk < bound, limit=limit
        ):
            _, account_id, endpoint_id, delivery_id = str(item.gsi1_sk).split("#")
            yield account_id, endpoint_id, delivery_id


def endpoint_conflict() -> Conflict:
    return Conflict("the webhook endpoint changed at the same time; try again")
