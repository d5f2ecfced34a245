"""Assistant items: PK=A#<acct> SK=ASST#<assistant id>.

The configuration is the `doc` (JSON, secrets included, optimistic `version`). Two facts other
parts maintain live beside it as their own attributes, so they can change in transactions
without reading or rewriting the document, and so a delete can be refused atomically:

- `phone_number_ids`: a DynamoDB string set (SS) of the numbers assigned to the assistant. A set
  rather than a list because assignment must be idempotent: ADD and DELETE of one id need no
  index and no read. DynamoDB never stores an empty set: no numbers = no attribute.
- `active_campaign_count`: a number, moved by +1/-1 as campaigns start and finish, never below 0.

Saving a configuration only sets `doc` (UpdateItem, version checked), never those two.
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeSetAttribute
from pynamodb.exceptions import (
    DeleteError,
    DoesNotExist,
    PutError,
    TransactWriteError,
    UpdateError,
)
from pynamodb.expressions.condition import Condition, size
from pynamodb.transactions import TransactWrite

from talkturo.domain.assistant_tools import REVEAL_SECRETS
from talkturo.domain.assistants import AssistantRecord
from talkturo.errors import Conflict, NotFound
from talkturo.store import keys
from talkturo.store.paging import query_page
from talkturo.store.table import Document, Item, connection
from talkturo.store.transact import Writes

PREFIX = "ASST#"
# Kept on their own attributes, not in the document.
_LINKS = {"phone_number_ids", "active_campaign_count"}


class AssistantItem(Document):
    """PK=A#<acct> SK=ASST#<assistant id>."""

    phone_number_ids = UnicodeSetAttribute(null=True)
    active_campaign_count = NumberAttribute(default=0)


class AssistantLinksItem(Item):
    """The same item seen without its document: for changes to its links only.

    It has no version attribute, so updates through it neither check nor bump the document's
    version (a PATCH and a number assignment never conflict).
    """

    phone_number_ids = UnicodeSetAttribute(null=True)
    active_campaign_count = NumberAttribute(null=True)


def _sk(assistant_id: str) -> str:
    return PREFIX + assistant_id


def _record_of(item: AssistantItem) -> AssistantRecord:
    record = AssistantRecord.model_validate_json(item.doc)
    record.phone_number_ids = sorted(item.phone_number_ids or ())
    record.active_campaign_count = int(item.active_campaign_count or 0)
    return record


def _doc_of(record: AssistantRecord) -> str:
    return record.model_dump_json(context=REVEAL_SECRETS, exclude=_LINKS)


def _not_found() -> NotFound:
    return NotFound("no such assistant", param="id")


def _condition_failed(error: Exception) -> bool:
    return getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException"


def create(account_id: str, record: AssistantRecord) -> None:
    connection()
    item = AssistantItem(
        keys.account(account_id),
        _sk(record.id),
        doc=_doc_of(record),
        active_campaign_count=0,
    )
    try:
        item.save(condition=AssistantItem.pk.does_not_exist())
    except PutError as error:
        if _condition_failed(error):
            raise Conflict("an assistant with this id already exists", param="id") from None
        raise


def get(account_id: str, assistant_id: str) -> tuple[AssistantRecord, int]:
    """The assistant and the version of its document (for `save`)."""
    connection()
    try:
        item = AssistantItem.get(keys.account(account_id), _sk(assistant_id), consistent_read=True)
    except DoesNotExist:
        raise _not_found() from None
    return _record_of(item), int(item.version)


def save(account_id: str, record: AssistantRecord, version: int) -> None:
    """Replace the document if it is still at `version` (Conflict otherwise)."""
    connection()
    item = AssistantItem(keys.account(account_id), _sk(record.id))
    item.version = version
    try:
        item.update(actions=[AssistantItem.doc.set(_doc_of(record))])
    except UpdateError as error:
        if _condition_failed(error):
            raise Conflict("the assistant changed at the same time; try again") from None
        raise


def _free() -> Condition:
    """The item exists, holds no phone number and no running campaign uses it."""
    no_numbers = AssistantItem.phone_number_ids.does_not_exist() | (
        size(AssistantItem.phone_number_ids) == 0
    )
    no_campaigns = AssistantItem.active_campaign_count.does_not_exist() | (
        AssistantItem.active_campaign_count == 0
    )
    return AssistantItem.pk.exists() & no_numbers & no_campaigns


def delete(account_id: str, assistant_id: str) -> None:
    """Delete, unless numbers are assigned or campaigns run (checked in the same request)."""
    connection()
    item = AssistantItem(keys.account(account_id), _sk(assistant_id))
    try:
        item.delete(condition=_free(), add_version_condition=False)
    except DeleteError as error:
        if not _condition_failed(error):
            raise
        current, _ = get(account_id, assistant_id)  # NotFound when it was never there
        reasons = []
        if current.phone_number_ids:
            reasons.append(f"phone numbers are assigned ({', '.join(current.phone_number_ids)})")
        if current.active_campaign_count:
            reasons.append(f"{current.active_campaign_count} campaign(s) are running with it")
        raise Conflict(
            "the assistant is in use: "
            + ("; ".join(reasons) or "it changed at the same time, try again")
            + ". Unassign its numbers and stop its campaigns first.",
            param="id",
            code="assistant_in_use",
        ) from None


def list_page(
    account_id: str, *, limit: int, starting_after: str | None
) -> tuple[list[AssistantRecord], str | None]:
    """Newest first (ids are time-ordered ULIDs)."""
    return query_page(
        AssistantItem,
        keys.account(account_id),
        convert=_record_of,
        limit=limit,
        starting_after=starting_after,
        range_key_condition=AssistantItem.sk.startswith(PREFIX),
    )


# ------------------------------------------------------------------ links (for other parts)


def _links(account_id: str, assistant_id: str) -> AssistantLinksItem:
    return AssistantLinksItem(keys.account(account_id), _sk(assistant_id))


def stage_add_phone_number(
    tx: TransactWrite, account_id: str, assistant_id: str, number_id: str
) -> None:
    """Add a number to the assistant's set inside a transaction (idempotent; the assistant must
    exist). The number's own item, its single assistant, is the caller's to write in the same
    transaction."""
    tx.update(
        _links(account_id, assistant_id),
        actions=[AssistantLinksItem.phone_number_ids.add({number_id})],
        condition=AssistantLinksItem.pk.exists(),
    )


def stage_remove_phone_number(
    tx: TransactWrite, account_id: str, assistant_id: str, number_id: str
) -> None:
    """Remove a number from the assistant's set inside a transaction (idempotent)."""
    tx.update(
        _links(account_id, assistant_id),
        actions=[AssistantLinksItem.phone_number_ids.delete({number_id})],
        condition=AssistantLinksItem.pk.exists(),
    )


def stage_campaign_count(tx: TransactWrite, account_id: str, assistant_id: str, delta: int) -> None:
    """Move the running-campaign count by `delta` (+1 / -1) inside a transaction, never below 0."""
    condition: Any = AssistantLinksItem.pk.exists()
    if delta < 0:
        condition &= AssistantLinksItem.active_campaign_count >= -delta
    tx.update(
        _links(account_id, assistant_id),
        actions=[AssistantLinksItem.active_campaign_count.add(delta)],
        condition=condition,
    )


def campaign_count_write(writes: Writes, account_id: str, assistant_id: str, delta: int) -> None:
    """The same move as `stage_campaign_count`, as one write of a labelled transaction
    (label `assistant`: refused when the assistant is gone or the count would go below 0)."""
    condition: Any = AssistantLinksItem.pk.exists()
    if delta < 0:
        condition &= AssistantLinksItem.active_campaign_count >= -delta
    writes.update(
        "assistant",
        _links(account_id, assistant_id),
        [AssistantLinksItem.active_campaign_count.add(delta)],
        condition,
    )


def _one(stage: Any, account_id: str, assistant_id: str, *args: Any) -> None:
    connection()
    try:
        with TransactWrite(connection=Item._get_connection().connection) as tx:
            stage(tx, account_id, assistant_id, *args)
    except TransactWriteError as error:
        if not any(r and r.code == "ConditionalCheckFailed" for r in error.cancellation_reasons):
            raise
        get(account_id, assistant_id)  # NotFound when the assistant does not exist
        raise Conflict("the running-campaign count cannot go below zero") from None


def add_phone_number(account_id: str, assistant_id: str, number_id: str) -> None:
    _one(stage_add_phone_number, account_id, assistant_id, number_id)


def remove_phone_number(account_id: str, assistant_id: str, number_id: str) -> None:
    _one(stage_remove_phone_number, account_id, assistant_id, number_id)


def change_campaign_count(account_id: str, assistant_id: str, delta: int) -> None:
    _one(stage_campaign_count, account_id, assistant_id, delta)
