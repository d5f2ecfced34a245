"""Contact import jobs, their per-row error reports, and the receipts of rows already done.

Items (see docs/data-model.md):
- Job     PK=A#<acct> SK=IMP#<imp id>: the document (status, counters, columns), plus
          `next_row` (the first row not yet done, 0-based over the file's records) and
          `queued_row` (the start_row of the last chunk message sent). Each chunk's counters
          land with the condition `next_row = <its start_row>`, so a chunk counts once.
          `resume_offset`, `resume_row`: where the record `next_row` starts in the file (the
          character offset and the spreadsheet row before it), written with `next_row`, so
          the next chunk reads on from there rather than from the file's start.
          `failing_row`, `failed_attempts`, `last_error`: the chunk that is failing, how often,
          and the class of its last error (what a dead letter's reason reports). `failure`:
          set when a dead letter ended the import; no chunk's counters may then make it
          `completed` again (they land on the failed job, see `advance`).
- Error   PK=A#<acct>#IMP#<imp id> SK=ROW#<row, 7 digits>: a failed row's values and errors,
          read in row order for the report.
- Receipt PK=A#<acct>#IMP#<imp id> SK=OK#<row, 7 digits>: a row that created or updated a
          contact, written in the contact's own transaction, so a chunk redone after a crash
          never applies a row twice. Expires with the uploaded file (30 days).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, UpdateError

from talkturo.domain.contact_imports import ContactImport, ImportRowError, Resume
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
    failing_row = NumberAttribute(null=True)
    failed_attempts = NumberAttribute(null=True)
    last_error = UnicodeAttribute(null=True)
    failure = UnicodeAttribute(null=True)
    resume_offset = NumberAttribute(null=True)
    resume_row = NumberAttribute(null=True)


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
    failing_row: int | None = None
    failed_attempts: int = 0
    last_error: str | None = None
    # Ended by a dead letter (see `fail_dead`).
    dead: bool = False
    # Where the record `next_row` starts in the file, when the chunk before it said.
    resume: Resume | None = None


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
        failing_row=None if item.failing_row is None else int(item.failing_row),
        failed_attempts=int(item.failed_attempts or 0),
        last_error=item.last_error,
        dead=item.failure is not None,
        resume=(
            Resume(offset=int(item.resume_offset), row=int(item.resume_row))
            if item.resume_offset is not None and item.resume_row is not None
            else None
        ),
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


def save_job(account_id: str, job: ContactImport) -> bool:
    """Overwrite the job's document, leaving its row markers as they are; False (nothing
    written) when the job is gone or a dead letter ended it meanwhile."""
    return _update_if(
        account_id,
        job.id,
        [ContactImportItem.doc.set(job.model_dump_json())],
        ContactImportItem.pk.exists() & ContactImportItem.failure.does_not_exist(),
    )


def advance(
    account_id: str,
    job: ContactImport,
    *,
    start_row: int,
    next_row: int,
    resume: Resume | None = None,
    dead: bool = False,
) -> bool:
    """Record a chunk's counters and move `next_row` on, only if no one did it before;
    `resume`: where the record `next_row` starts in the file (None: unknown).

    `dead`: the job a dead letter ended (its counters still land, its status stays failed);
    otherwise the job must not have been ended so, lest its failure be overwritten.
    """
    failure = ContactImportItem.failure
    ended = failure.exists() if dead else failure.does_not_exist()
    position = (
        [
            ContactImportItem.resume_offset.set(resume.offset),
            ContactImportItem.resume_row.set(resume.row),
        ]
        if resume is not None
        else [ContactImportItem.resume_offset.remove(), ContactImportItem.resume_row.remove()]
    )
    return _update_if(
        account_id,
        job.id,
        [
            ContactImportItem.doc.set(job.model_dump_json()),
            ContactImportItem.next_row.set(next_row),
            *position,
        ],
        (ContactImportItem.next_row == start_row) & ended,
    )


def fail_dead(account_id: str, job: ContactImport, *, next_row: int) -> bool:
    """End the job as failed for a dead letter, if no chunk landed since it was read."""
    return _update_if(
        account_id,
        job.id,
        [
            ContactImportItem.doc.set(job.model_dump_json()),
            ContactImportItem.failure.set(job.error or "failed"),
        ],
        (ContactImportItem.next_row == next_row) & ContactImportItem.failure.does_not_exist(),
    )


def note_failure(account_id: str, import_id: str, start_row: int, error: str) -> None:
    """Count a failed attempt at the chunk starting at `start_row`, and its error's class."""
    counted = _update_if(
        account_id,
        import_id,
        [ContactImportItem.failed_attempts.add(1), ContactImportItem.last_error.set(error)],
        ContactImportItem.failing_row == start_row,
    )
    if not counted:  # the first failure of this chunk
        _update_if(
            account_id,
            import_id,
            [
                ContactImportItem.failing_row.set(start_row),
                ContactImportItem.failed_attempts.set(1),
                ContactImportItem.last_error.set(error),
            ],
            ContactImportItem.pk.exists(),
        )


def _update_if(account_id: str, import_id: str, actions: list[Any], condition: Any) -> bool:
    """One conditional update of the job; False when the condition did not hold."""
    connection()
    try:
        ContactImportItem(keys.account(account_id), _sk(import_id)).update(
            actions=actions, condition=condition
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
