"""Contact import jobs, their chunks, their per-row error reports, and the receipts of rows
already done.

Items (see docs/data-model.md):
- Job     PK=A#<acct> SK=IMP#<imp id>: the document (status, columns, error), plus `parts`
          and `tails` (how many chunks the file was cut into, and how many tail chunks do the
          rows left to the end), `chunks_done`, and the counters every chunk adds as it lands
          (`rows_done`, `created_n`, `updated_n`, `failed_n`, `companies_n`: what the job
          shows, whatever its document says). `started`: the first chunk moved it to
          `processing`; `finished`: the last one completed it. `failure`: set when a dead
          letter ended the import; no chunk may then complete it (their counters still add).
- Chunk   PK=A#<acct>#IMP#<imp id> SK=PART#<first record, 7 digits> or TAIL#<part, 7 digits>:
          `landed` (`done`, or `dead` for the chunk a dead letter ended) with the chunk's
          counters, written in one transaction with the job's additions, so a chunk counts
          once; `failed_attempts`, `last_error`: how often it failed, and the class of its
          last error (what a dead letter's reason reports).
- Error   PK=A#<acct>#IMP#<imp id> SK=ROW#<row, 7 digits>: a failed row's values and errors,
          read in row order for the report.
- Receipt PK=A#<acct>#IMP#<imp id> SK=OK#<row, 7 digits>: a row that created or updated a
          contact, written in the contact's own transaction, so a chunk redone after a crash
          never applies a row twice. Expires with the uploaded file (30 days).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from talkturo.domain.contact_imports import ContactImport, ImportRowError
from talkturo.errors import NotFound
from talkturo.store import keys
from talkturo.store.paging import query_page
from talkturo.store.table import Item, connection

PREFIX = "IMP#"
RECEIPT_TTL_SECONDS = 30 * 86_400


class ContactImportItem(Item):
    """PK=A#<acct> SK=IMP#<imp id>. Not versioned: its document is written at the upload, by
    the first chunk, by the last and by a dead letter, each guarded by a marker; the chunks'
    counters are added, never set."""

    doc = UnicodeAttribute()
    parts = NumberAttribute(null=True)
    tails = NumberAttribute(null=True)
    chunks_done = NumberAttribute(null=True)
    rows_done = NumberAttribute(null=True)
    created_n = NumberAttribute(null=True)
    updated_n = NumberAttribute(null=True)
    failed_n = NumberAttribute(null=True)
    companies_n = NumberAttribute(null=True)
    started = NumberAttribute(null=True)
    finished = NumberAttribute(null=True)
    failure = UnicodeAttribute(null=True)


class ImportChunkItem(Item):
    """PK=A#<acct>#IMP#<imp id> SK=PART#<first record> or TAIL#<part>."""

    landed = UnicodeAttribute(null=True)
    rows = NumberAttribute(null=True)
    created = NumberAttribute(null=True)
    updated = NumberAttribute(null=True)
    failed = NumberAttribute(null=True)
    companies = NumberAttribute(null=True)
    failed_attempts = NumberAttribute(null=True)
    last_error = UnicodeAttribute(null=True)


class ImportRowErrorItem(Item):
    """PK=A#<acct>#IMP#<imp id> SK=ROW#<row>."""

    doc = UnicodeAttribute()


class ImportReceiptItem(Item):
    """PK=A#<acct>#IMP#<imp id> SK=OK#<row>."""

    outcome = UnicodeAttribute()


@dataclass(frozen=True)
class Counts:
    """What rows of an import came to."""

    rows: int = 0
    created: int = 0
    updated: int = 0
    failed: int = 0
    companies: int = 0

    def minus(self, other: Counts) -> Counts:
        return Counts(
            self.rows - other.rows,
            self.created - other.created,
            self.updated - other.updated,
            self.failed - other.failed,
            self.companies - other.companies,
        )


@dataclass
class Progress:
    job: ContactImport  # its counters are the chunks' sums
    parts: int
    tails: int
    chunks_done: int
    # Ended by a dead letter (see `fail_dead`).
    dead: bool = False
    # Written before chunks ran side by side: no parts, no chunk items.
    legacy: bool = False


@dataclass
class Part:
    """A chunk's item: whether it landed, its counters, its failed attempts."""

    landed: str | None = None
    counts: Counts = Counts()
    failed_attempts: int = 0
    last_error: str | None = None


def _sk(import_id: str) -> str:
    return f"{PREFIX}{import_id}"


def _rows_partition(account_id: str, import_id: str) -> str:
    return keys.account_scoped(account_id, "IMP", import_id)


def _row(row: int) -> str:
    return f"{row:07d}"


def part_key(start_row: int, tail: int | None) -> str:
    """The chunk item's sort key: a part by its first record, a tail part by its number."""
    return f"TAIL#{_row(tail)}" if tail is not None else f"PART#{_row(start_row)}"


def create(account_id: str, job: ContactImport, *, parts: int, tails: int) -> None:
    connection()
    ContactImportItem(
        keys.account(account_id),
        _sk(job.id),
        doc=job.model_dump_json(),
        parts=parts,
        tails=tails,
        chunks_done=0,
        rows_done=0,
        created_n=0,
        updated_n=0,
        failed_n=0,
        companies_n=0,
    ).save(ContactImportItem.pk.does_not_exist())


def _item(account_id: str, import_id: str) -> ContactImportItem:
    connection()
    try:
        return ContactImportItem.get(keys.account(account_id), _sk(import_id), consistent_read=True)
    except DoesNotExist:
        raise NotFound("no such contact import", param="id") from None


def _job(item: ContactImportItem) -> ContactImport:
    """The job's document, with the counters its chunks added."""
    job = ContactImport.model_validate_json(item.doc)
    if item.parts is None:
        return job
    return job.model_copy(update=_counters(counts_of(item)))


def counts_of(item: ContactImportItem) -> Counts:
    return Counts(
        int(item.rows_done or 0),
        int(item.created_n or 0),
        int(item.updated_n or 0),
        int(item.failed_n or 0),
        int(item.companies_n or 0),
    )


def _counters(counts: Counts) -> dict[str, int]:
    return {
        "processed_rows": counts.rows,
        "created": counts.created,
        "updated": counts.updated,
        "failed": counts.failed,
        "created_companies": counts.companies,
    }


def with_counts(job: ContactImport, counts: Counts) -> ContactImport:
    return job.model_copy(update=_counters(counts))


def get(account_id: str, import_id: str) -> ContactImport:
    return _job(_item(account_id, import_id))


def progress(account_id: str, import_id: str) -> Progress:
    item = _item(account_id, import_id)
    return Progress(
        job=_job(item),
        parts=int(item.parts or 0),
        tails=int(item.tails or 0),
        chunks_done=int(item.chunks_done or 0),
        dead=item.failure is not None,
        legacy=item.parts is None,
    )


def list_page(
    account_id: str, *, limit: int, starting_after: str | None
) -> tuple[list[ContactImport], str | None]:
    return query_page(
        ContactImportItem,
        keys.account(account_id),
        convert=_job,
        limit=limit,
        starting_after=starting_after,
        range_key_condition=ContactImportItem.sk.startswith(PREFIX),
    )


def save_job(account_id: str, job: ContactImport) -> bool:
    """Overwrite the job's document, leaving its markers and counters as they are; False
    (nothing written) when the job is gone or a dead letter ended it meanwhile."""
    return _update_if(
        account_id,
        job.id,
        [ContactImportItem.doc.set(job.model_dump_json())],
        ContactImportItem.pk.exists() & ContactImportItem.failure.does_not_exist(),
    )


def start_processing(account_id: str, job: ContactImport) -> bool:
    """The first chunk moves the job to `processing`; False when another did it first, or a
    dead letter ended it."""
    return _update_if(
        account_id,
        job.id,
        [ContactImportItem.doc.set(job.model_dump_json()), ContactImportItem.started.set(1)],
        ContactImportItem.pk.exists()
        & ContactImportItem.started.does_not_exist()
        & ContactImportItem.failure.does_not_exist(),
    )


def finish(account_id: str, job: ContactImport, *, chunks: int) -> bool:
    """Complete the job once all `chunks` landed, once; False when it was done already, a dead
    letter ended it, or a chunk is still to land."""
    return _update_if(
        account_id,
        job.id,
        [ContactImportItem.doc.set(job.model_dump_json()), ContactImportItem.finished.set(1)],
        (ContactImportItem.chunks_done == chunks)
        & ContactImportItem.finished.does_not_exist()
        & ContactImportItem.failure.does_not_exist(),
    )


def part(account_id: str, import_id: str, key: str) -> Part:
    connection()
    try:
        item = ImportChunkItem.get(
            _rows_partition(account_id, import_id), key, consistent_read=True
        )
    except DoesNotExist:
        return Part()
    return Part(
        landed=item.landed,
        counts=Counts(
            int(item.rows or 0),
            int(item.created or 0),
            int(item.updated or 0),
            int(item.failed or 0),
            int(item.companies or 0),
        ),
        failed_attempts=int(item.failed_attempts or 0),
        last_error=item.last_error,
    )


def _set_counts(counts: Counts) -> list[Any]:
    return [
        ImportChunkItem.rows.set(counts.rows),
        ImportChunkItem.created.set(counts.created),
        ImportChunkItem.updated.set(counts.updated),
        ImportChunkItem.failed.set(counts.failed),
        ImportChunkItem.companies.set(counts.companies),
    ]


def _add_counts(counts: Counts) -> list[Any]:
    return [
        ContactImportItem.rows_done.add(counts.rows),
        ContactImportItem.created_n.add(counts.created),
        ContactImportItem.updated_n.add(counts.updated),
        ContactImportItem.failed_n.add(counts.failed),
        ContactImportItem.companies_n.add(counts.companies),
    ]


def land(account_id: str, import_id: str, key: str, counts: Counts, *, was: Part) -> bool:
    """A chunk's counters land on the job, once: False when another delivery landed it first.

    A chunk a dead letter ended (`was.landed == "dead"`, with what it had done by then) lands
    its whole count in place of that one, and the job stays failed."""
    chunk = ImportChunkItem(_rows_partition(account_id, import_id), key)
    job = ContactImportItem(keys.account(account_id), _sk(import_id))
    if was.landed == "dead":
        condition = (ImportChunkItem.landed == "dead") & (ImportChunkItem.rows == was.counts.rows)
        added, landed = counts.minus(was.counts), "dead"
        done: list[Any] = []
    else:
        condition = ImportChunkItem.landed.does_not_exist()
        added, landed = counts, "done"
        done = [ContactImportItem.chunks_done.add(1)]
    try:
        with TransactWrite(connection=Item._get_connection().connection) as tx:
            tx.update(
                chunk,
                actions=[ImportChunkItem.landed.set(landed), *_set_counts(counts)],
                condition=condition,
            )
            tx.update(
                job,
                actions=[*_add_counts(added), *done],
                condition=ContactImportItem.pk.exists(),
            )
    except TransactWriteError as error:
        if _refused(error):
            return False
        raise
    return True


def fail_dead(
    account_id: str, job: ContactImport, key: str, partial: Counts, *, reason: str
) -> bool:
    """End the job `failed` for the dead letter of chunk `key`, counting what it had done
    (`partial`); False when it was ended already or the chunk landed meanwhile."""
    chunk = ImportChunkItem(_rows_partition(account_id, import_id := job.id), key)
    item = ContactImportItem(keys.account(account_id), _sk(import_id))
    try:
        with TransactWrite(connection=Item._get_connection().connection) as tx:
            tx.update(
                chunk,
                actions=[ImportChunkItem.landed.set("dead"), *_set_counts(partial)],
                condition=ImportChunkItem.landed.does_not_exist(),
            )
            tx.update(
                item,
                actions=[
                    ContactImportItem.doc.set(job.model_dump_json()),
                    ContactImportItem.failure.set(reason),
                    *_add_counts(partial),
                ],
                condition=ContactImportItem.pk.exists()
                & ContactImportItem.failure.does_not_exist()
                & ContactImportItem.finished.does_not_exist(),
            )
    except TransactWriteError as error:
        if _refused(error):
            return False
        raise
    return True


def _refused(error: TransactWriteError) -> bool:
    """Cancelled only because a condition did not hold (not contention or a failure)."""
    reasons = error.cancellation_reasons
    return any(r and r.code == "ConditionalCheckFailed" for r in reasons) and all(
        r is None or r.code in ("None", "ConditionalCheckFailed") for r in reasons
    )


def note_failure(account_id: str, import_id: str, key: str, error: str) -> None:
    """Count a failed attempt at chunk `key`, and its error's class."""
    connection()
    ImportChunkItem(_rows_partition(account_id, import_id), key).update(
        actions=[
            ImportChunkItem.failed_attempts.add(1),
            ImportChunkItem.last_error.set(error),
        ]
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


def finished_of(account_id: str, import_id: str, rows: Iterable[int]) -> dict[int, str]:
    """`finished_rows` for rows spread over the file (a tail part's), read by their keys."""
    connection()
    partition = _rows_partition(account_id, import_id)
    wanted = sorted(set(rows))
    done: dict[int, str] = {}
    receipts = ImportReceiptItem.batch_get(
        [(partition, f"OK#{_row(row)}") for row in wanted], consistent_read=True
    )
    for receipt in receipts:
        done[int(str(receipt.sk).removeprefix("OK#"))] = str(receipt.outcome)
    errors = ImportRowErrorItem.batch_get(
        [(partition, f"ROW#{_row(row)}") for row in wanted],
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
