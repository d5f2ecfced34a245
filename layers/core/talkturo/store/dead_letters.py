"""Dead-letter records: one per dead-lettered message, listed newest first for the operator.

Items (see docs/data-model.md):
- Dead letter  PK=DEADLETTER#<message id> SK=DEADLETTER: the record's document, written with
               `attribute_not_exists` (a dead letter delivered twice is recorded once);
               GSI1 DEADLETTERS / <dead_at iso>#<message id> (all queues),
               GSI2 DEADLETTERS#<queue> / the same (one queue). Expires after 14 days.

Operator items, like the number routing items: no account's route builds these keys, only the
admin API and the dead-letter worker do. Dead letters are rare, so one index partition is plenty.
"""

from __future__ import annotations

from datetime import timedelta

from pynamodb.attributes import UnicodeAttribute
from pynamodb.exceptions import PutError

from talkturo.domain.dead_letters import RETENTION_DAYS, DeadLetter
from talkturo.store.paging import query_page
from talkturo.store.table import Item, connection

SK = "DEADLETTER"
ALL = "DEADLETTERS"


class DeadLetterItem(Item):
    """PK=DEADLETTER#<message id> SK=DEADLETTER."""

    doc = UnicodeAttribute()


def _by_queue(queue: str) -> str:
    return f"{ALL}#{queue}"


def record(letter: DeadLetter) -> bool:
    """Keep the record; False when this message was recorded before."""
    connection()
    order = f"{letter.dead_at.isoformat()}#{letter.id}"
    item = DeadLetterItem(
        f"DEADLETTER#{letter.id}",
        SK,
        doc=letter.model_dump_json(),
        gsi1_pk=ALL,
        gsi1_sk=order,
        gsi2_pk=_by_queue(letter.queue),
        gsi2_sk=order,
        expires_at=int((letter.dead_at + timedelta(days=RETENTION_DAYS)).timestamp()),
    )
    try:
        item.save(DeadLetterItem.pk.does_not_exist())
    except PutError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


def list_page(
    *, queue: str | None, limit: int, starting_after: str | None
) -> tuple[list[DeadLetter], str | None]:
    """Newest first, of every queue or of one."""
    index, partition = ("GSI2", _by_queue(queue)) if queue else ("GSI1", ALL)
    return query_page(
        DeadLetterItem,
        partition,
        convert=lambda item: DeadLetter.model_validate_json(item.doc),
        limit=limit,
        starting_after=starting_after,
        index=index,
    )
