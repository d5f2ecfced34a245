"""Contact import jobs, their per-row error reports, and the receipts of rows already done.

Items (see docs/data-model.md):
- Job     PK=A#<acct> SK=IMP#<imp id>: the document (status, counters, columns), plus
          `next_row` (the first row not yet done, 0-based over the file's records) and
          `queued_row` (the start_row of the last chunk message sent). Each chunk's counters
          land with the condition `next_row = <its start_row>`, so a chunk counts once.
- Error   PK=A#<acct>#IMP#<imp id> SK=ROW#<row, 7 digits>: a failed row's values and errors,
          read in row order for the report.
- Receipt PK=A#<acct>#IMP#<imp id> SK=OK#<row, 7 digits>: a row that created or updated a
          contact, written in the contact's own transaction, so a chunk redone after a crash
          never applies a row twice. Expires with the uploaded file (30 days).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, UpdateError

from talkturo.domain.contact_imports import ContactImport, ImportRowError
from talkturo.errors import NotFound
from talkturo.store import keys
from talkturo.store.paging import query_page
from talkturo.store.table import Item, connection

PREFIX = "IMP#"
RECEIPT_TTL_SECONDS = 30 * 86_400


class ContactImportItem(Item):
    """PK=A#<acct> SK=IMP#<imp id>. Not versioned: only the worker writes it after creation,
    one chunk at a time, guarded by `next_row`."""

    doc = UnicodeAttribute()
    next_row = NumberAttribute(default=0)
    queued_row = NumberAttribute(default=0)


class ImportRowErrorItem(Item):
    """PK=A#<acct>#IMP#<imp id> SK=ROW#<row>."""

    doc = UnicodeAttribute()


class ImportReceiptItem(Item):
    """PK=A#<acct>#IMP#<imp id> SK=OK#<row>."""

    outcome = UnicodeAttribute()


@dataclass
class Progress:
    job: ContactImport
    next_row: int
    queued_row: int


def _sk(import_id: str) -> str:
    return f"{PREFIX}{import_id}"


def _rows_partition(account_id: str, import_id: str) -> str:
    return keys.account_scoped(account_id, "IMP", import_id)


def _row(row: int) -> str:
    return f"{row:07d}"


def create(account_id: str, job: ContactImport) -> None:
    connection()
    ContactImportItem(
        keys.account(account_id), _sk(job.id), doc=job.model_dump_json(), next_row=0, queued_row=0
    ).save(ContactImportItem.pk.does_not_exist())


def _item(account_id: str, import_id: str) -> ContactImportItem:
    connection()
    try:
        return ContactImportItem.get(keys.account(account_id), _sk(import_id), consistent_read=True)
    except DoesNotExist:
        raise NotFound("no such contact import", param="id") from None


def get(account_id: str, import_id: str) -> ContactImport:
    return ContactImport.model_validate_json(_item(account_id, import_id).doc)


def progress(account_id: str, import_id: str) -> Progress:
    item = _item(account_id, import_id)
    return Progress(
        job=ContactImport.model_validate_json(item.doc),
        next_row=int(item.next_row or 0),
        queued_row=int(item.queued_row or 0),
    )


def list_page(
    account_id: str, *, limit: int, starting_after: str | None
) -> tuple[list[ContactImport], str | None]:
    return query_page(
        ContactImportItem,
        keys.account(account_id),
        convert=lambda item: ContactImport.model_validate_json(item.doc),
        limit=limit,
        starting_after=starting_after,
        range_key_condition=ContactImportItem.sk.startswith(PREFIX),
    )


def save_job(account_id: str, job: ContactImport) -> None:
    """Overwrite the job's document, leaving its row markers as they are."""
    connection()
    ContactImportItem(keys.account(account_id), _sk(job.id)).update(
        actions=[ContactImportItem.doc.set(job.model_dump_json())],
        condition=ContactImportItem.pk.exists(),
    )


def advance(account_id: str, job: ContactImport, *, start_row: int, next_row: int) -> bool:
    """Record a chunk's counters and move `next_row` on, only if no one did it before."""
    connection()
    try:
        ContactImportItem(keys.account(account_id), _sk(job.id)).update(
            actions=[
                ContactImportItem.doc.set(job.model_dump_json()),
                ContactImportItem.next_row.set(next_row),
            ],
            condition=ContactImportItem.next_row == start_row,
        )
    except UpdateError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


def mark_queued(account_id: str, import_id: str, row: int) -> None:
    """Note that the message for the chunk starting at `row` was sent."""
    connection()
    ContactImportItem(keys.account(account_id), _sk(import_id)).update(
        actions=[ContactImportItem.queued_row.set(row)],
        condition=ContactImportItem.pk.exists(),
    )


def finished_rows(account_id: str, import_id: str, first: int, last: int) -> dict[int, str]:
    """Rows between `first` and `last` (spreadsheet numbers) already done: row -> outcome
    (`created`, `updated`, or `failed` for a row in the error report)."""
    connection()
    partition = _rows_partition(account_id, import_id)
    done: dict[int, str] = {}
    receipts = ImportReceiptItem.query(
        partition,
        ImportReceiptItem.sk.between(f"OK#{_row(first)}", f"OK#{_row(last)}"),
        consistent_read=True,
    )
    for receipt in receipts:
        done[int(str(receipt.sk).removeprefix("OK#"))] = str(receipt.outcome)
    errors = ImportRowErrorItem.query(
        partition,
        ImportRowErrorItem.sk.between(f"ROW#{_row(first)}", f"ROW#{_row(last)}"),
        consistent_read=True,
        attributes_to_get=["PK", "SK"],
    )
    for error in errors:
        done[int(str(error.sk).removeprefix("ROW#"))] = "failed"
    return done


def receipt(account_id: str, import_id: str, row: int, outcome: str) -> ImportReceiptItem:
    """The receipt to write with the row's contact (see contacts.create/update)."""
    return ImportReceiptItem(
        _rows_partition(account_id, import_id),
        f"OK#{_row(row)}",
        outcome=outcome,
        expires_at=int(time.time()) + RECEIPT_TTL_SECONDS,
    )


def record_error(account_id: str, import_id: str, error: ImportRowError) -> None:
    connection()
    ImportRowErrorItem(
        _rows_partition(account_id, import_id),
        f"ROW#{_row(error.row)}",
        doc=error.model_dump_json(),
    ).save()


def errors_page(
    account_id: str, import_id: str, *, limit: int, starting_after: str | None
) -> tuple[list[ImportRowError], str | None]:
    """The failed rows, in row order."""
    return query_page(
        ImportRowErrorItem,
        _rows_partition(account_id, import_id),
        convert=lambda item: ImportRowError.model_validate_json(item.doc),
        limit=limit,
        starting_after=starting_after,
        range_key_condition=ImportRowErrorItem.sk.startswith("ROW#"),
        newest_first=False,
    )
