"""CSV import of contacts: accept a file, then work through it in chunks from a queue.

The upload is checked at once (size, encoding, a header Talkturo understands), kept in the
files bucket, and answered with a pending job. The file is read once there, to count its rows
and find where each chunk of `CHUNK_ROWS` records starts; every chunk is then queued at once,
and the queue's worker takes them side by side, one per message. Each row goes through the
same service as `POST /v1/contacts` (a row whose phone matches an existing contact updates it
with the row's non-empty cells, never lifting do-not-call). A row is checked whole before
anything of it is written, its company included; a bad row lands in the report and never stops
the others. A chunk's counters land once (its chunk item, written with the job's additions);
the last chunk to land completes the job.

Rows sharing a phone number across chunks must apply in file order (the later row wins, as
each updates the contact the one before it created or changed): their chunks leave them to the
tail, which does them in file order, part after part, once every other chunk landed.

A chunk that keeps failing counts its failed attempts on its chunk item; when its message lands
in the dead-letter queue, `fail_dead_chunk` ends the import `failed` with that reason and the
rows done so far (docs/crm.md, "When an import cannot finish").
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError
from pynamodb.exceptions import PynamoDBException

from talkturo import queues
from talkturo.config import get_settings
from talkturo.domain.common import Page, utcnow
from talkturo.domain.companies import CompanyCreate
from talkturo.domain.contact_imports import (
    CHUNK_ROWS,
    MAX_BYTES,
    ContactImport,
    CsvFile,
    CsvProblem,
    ImportChunk,
    ImportColumn,
    ImportRowError,
    Record,
    RowErrorDetail,
    map_columns,
    read_chunks,
    read_csv,
    read_records,
    reported_values,
    row_values,
    tail_rows,
)
from talkturo.domain.contacts import Contact, ContactCreate, ContactUpdate
from talkturo.domain.dead_letters import Outcome
from talkturo.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    TalkturoError,
    UnsupportedMediaType,
)
from talkturo.ids import new_id
from talkturo.logs import logger
from talkturo.services import contacts, custom_fields
from talkturo.services.companies import phone_of
from talkturo.store import contact_imports as store
from talkturo.store import contacts as contact_store
from talkturo.store import files
from talkturo.store.contacts import NotTogether, ReceiptExists

CSV_MEDIA_TYPES = frozenset(
    {"text/csv", "application/csv", "text/plain", "application/vnd.ms-excel"}
)


def file_key(account_id: str, import_id: str) -> str:
    return f"contact-imports/{account_id}/{import_id}.csv"


def fingerprint(raw: bytes) -> str:
    """What identifies an upload for Idempotency-Key (the file itself is too big to keep)."""
    return hashlib.sha256(raw).hexdigest()


def start(
    account_id: str, raw: bytes, content_type: str | None, *, size: int | None = None
) -> ContactImport:
    """Check the file, keep it, and queue its chunks; the job answers at once.

    `size` is the whole upload's, when `raw` holds only its start (a file over the limit)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in CSV_MEDIA_TYPES:
        raise UnsupportedMediaType(
            "send the CSV file itself as the body, with Content-Type: text/csv",
            param="Content-Type",
        )
    size = len(raw) if size is None else size
    if size > MAX_BYTES:
        raise PayloadTooLarge(
            f"the file is {size} bytes; an import takes at most {MAX_BYTES} bytes (5 MiB)",
            param="file",
        )
    try:
        parsed, starts = read_chunks(raw, CHUNK_ROWS)
    except CsvProblem as problem:
        raise InvalidRequest(str(problem), param="file") from None
    keys = [field.key for field in custom_fields.definitions(account_id, "contact")]
    columns, unknown = map_columns(parsed.header, keys)
    if not columns:
        raise InvalidRequest(
            "no column is one Talkturo knows; name them first_name, last_name, email, phone, "
            "company, tags … or by a custom field's key",
            param="file",
        )
    if not parsed.records:
        raise InvalidRequest("the file has a header but no rows", param="file")
    deferred = set(tail_rows(parsed, columns, CHUNK_ROWS))
    now = utcnow()
    job = ContactImport(
        id=new_id("contact_import"),
        status="pending",
        file_size=len(raw),
        total_rows=len(parsed.records),
        columns=columns,
        unknown_columns=unknown,
        created_at=now,
        updated_at=now,
    )
    chunks = [
        ImportChunk(
            account_id=account_id,
            import_id=job.id,
            start_row=index * CHUNK_ROWS,
            offset=begin.offset,
            after_row=begin.row,
            deferred=[
                r.row
                for r in parsed.records[index * CHUNK_ROWS : (index + 1) * CHUNK_ROWS]
                if r.row in deferred
            ],
        )
        for index, begin in enumerate(starts)
    ]
    files.put(file_key(account_id, job.id), raw, "text/csv")
    store.create(account_id, job, parts=len(chunks), tails=math.ceil(len(deferred) / CHUNK_ROWS))
    try:
        queues.send_all(
            get_settings().contact_import_queue_url,
            [c.model_dump(exclude_defaults=True) for c in chunks],
        )
    except (BotoCoreError, ClientError, queues.NotQueued):
        _fail(account_id, job, "the import could not be queued; upload the file again")
        raise
    return job


def get(account_id: str, import_id: str) -> ContactImport:
    return store.get(account_id, import_id)


def list_imports(account_id: str, *, limit: int, starting_after: str | None) -> Page[ContactImport]:
    data, cursor = store.list_page(account_id, limit=limit, starting_after=starting_after)
    return Page[ContactImport](data=data, has_more=cursor is not None, next_cursor=cursor)


def row_errors(
    account_id: str, import_id: str, *, limit: int, starting_after: str | None
) -> Page[ImportRowError]:
    store.get(account_id, import_id)  # 404 for another account's import
    data, cursor = store.errors_page(
        account_id, import_id, limit=limit, starting_after=starting_after
    )
    return Page[ImportRowError](data=data, has_more=cursor is not None, next_cursor=cursor)


def _fail(account_id: str, job: ContactImport, reason: str) -> None:
    now = utcnow()
    failed = job.model_copy(
        update={"status": "failed", "error": reason, "updated_at": now, "completed_at": now}
    )
    store.save_job(account_id, failed)


def _key(chunk: ImportChunk) -> str:
    return store.part_key(chunk.start_row, chunk.tail)


def process_chunk(chunk: ImportChunk) -> None:
    """Import the rows of one chunk; a message for a chunk already done changes nothing.

    A failure is counted on the chunk (what its dead letter will report) and raised again, so
    the message comes back.
    """
    try:
        _process_chunk(chunk)
    except Exception as error:
        try:
            store.note_failure(chunk.account_id, chunk.import_id, _key(chunk), type(error).__name__)
        except PynamoDBException:  # the chunk's own error is the one to raise
            logger.exception("could not count a failed chunk", extra={"import": chunk.import_id})
        raise


def _process_chunk(chunk: ImportChunk) -> None:
    account_id, import_id = chunk.account_id, chunk.import_id
    try:
        state = store.progress(account_id, import_id)
    except NotFound:
        logger.warning("contact import is gone", extra={"import_id": import_id})
        return
    job = state.job
    if job.status in ("completed", "failed"):
        return
    if state.legacy:
        _fail(
            account_id, job, "the import was left unfinished by an upgrade; upload the file again"
        )
        return
    key = _key(chunk)
    was = store.part(account_id, import_id, key)
    if was.landed == "done":
        _after(account_id, import_id, chunk)  # landed, but what comes next may not have
        return
    if job.status == "pending":
        job = job.model_copy(update={"status": "processing", "updated_at": utcnow()})
        if (
            not store.start_processing(account_id, job)
            and store.progress(account_id, import_id).dead
        ):
            return  # a dead letter ended the import meanwhile

    raw = files.read(file_key(account_id, import_id))
    if raw is None:
        _fail(account_id, job, "the uploaded file is no longer available")
        return
    try:
        header, records = _records_of(raw, chunk, job)
    except CsvProblem as problem:
        _fail(account_id, job, str(problem))
        return
    done = _done(account_id, chunk, records)
    tally: Counter[str] = Counter()
    lookups = contacts.Lookups(account_id)
    _prefetch(lookups, header, [r for r in records if r.row not in done], job.columns)
    batch = _Batch(account_id, import_id, header, job.columns, lookups, tally)
    for record in records:
        outcome = done.get(record.row)
        if outcome is None:
            outcome = _import_row(
                account_id, import_id, header, record, job.columns, lookups, tally, batch
            )
        if outcome is not None:
            tally[outcome] += 1
    batch.flush()

    counts = _counts(len(records), tally)
    if not store.land(account_id, import_id, key, counts, was=was):
        # Another delivery got there first; or a dead letter ended the import as this one
        # ran, with what the chunk had done by then: its whole count replaces that one.
        now = store.part(account_id, import_id, key)
        if now.landed != "dead" or was.landed == "dead":
            return
        if not store.land(account_id, import_id, key, counts, was=now):
            return
    logger.info(
        "contact import chunk done",
        extra={"import_id": import_id, "start_row": chunk.start_row, "rows": len(records)},
    )
    _after(account_id, import_id, chunk)


def _records_of(
    raw: bytes, chunk: ImportChunk, job: ContactImport
) -> tuple[list[str], list[Record]]:
    """The header, and the records this chunk does: its own but those left to the tail; for a
    tail part, its share of those, in file order."""
    if chunk.tail is not None:
        parsed = read_csv(raw)
        rows = set(_tail_part(parsed, job, chunk.tail))
        return parsed.header, [r for r in parsed.records if r.row in rows]
    if chunk.resume is not None:
        parsed, _ = read_records(raw, resume=chunk.resume, limit=CHUNK_ROWS)
    else:
        parsed, _ = read_records(raw, skip=chunk.start_row, limit=CHUNK_ROWS)
    deferred = set(chunk.deferred)
    return parsed.header, [r for r in parsed.records if r.row not in deferred]


def _tail_part(parsed: CsvFile, job: ContactImport, part: int) -> list[int]:
    rows = tail_rows(parsed, job.columns, CHUNK_ROWS)
    return rows[part * CHUNK_ROWS : (part + 1) * CHUNK_ROWS]


def _done(account_id: str, chunk: ImportChunk, records: list[Record]) -> dict[int, str]:
    """The records of this chunk a delivery before this one did (a crash, a timeout)."""
    if not records:
        return {}
    if chunk.tail is not None:
        return store.finished_of(account_id, chunk.import_id, (r.row for r in records))
    mine = {r.row for r in records}
    found = store.finished_rows(account_id, chunk.import_id, records[0].row, records[-1].row)
    return {row: outcome for row, outcome in found.items() if row in mine}


def _after(account_id: str, import_id: str, chunk: ImportChunk) -> None:
    """What follows a chunk that landed: the tail's next part queued once every chunk before it
    landed, or the job completed by the last chunk (whichever delivery sees it first)."""
    state = store.progress(account_id, import_id)
    if state.dead or state.job.status in ("completed", "failed"):
        return
    total = state.parts + state.tails
    if state.chunks_done >= total:
        now = utcnow()
        finished = state.job.model_copy(
            update={"status": "completed", "updated_at": now, "completed_at": now}
        )
        if store.finish(account_id, finished, chunks=total):
            logger.info("contact import completed", extra={"import_id": import_id})
        return
    # The tail goes part after part; its first part once every chunk of the file landed.
    following = 0 if chunk.tail is None else chunk.tail + 1
    if state.tails and state.chunks_done == state.parts + following and following < state.tails:
        queues.send(
            get_settings().contact_import_queue_url,
            ImportChunk(
                account_id=account_id, import_id=import_id, start_row=0, tail=following
            ).model_dump(exclude_defaults=True),
        )


def _counts(rows: int, tally: Counter[str]) -> store.Counts:
    return store.Counts(
        rows=rows,
        created=tally["created"],
        updated=tally["updated"],
        failed=tally["failed"],
        companies=tally["company"],
    )


def fail_dead_chunk(chunk: ImportChunk) -> Outcome:
    """A chunk's message is a dead letter: end the import `failed`, with the reason and the
    counters of every row done, including those of this chunk done before it failed.

    Idempotent: an import already ended, or whose chunk got done after all, is left as it is.
    """
    account_id, import_id, key = chunk.account_id, chunk.import_id, _key(chunk)
    for _ in range(3):
        try:
            state = store.progress(account_id, import_id)
        except NotFound:
            return Outcome(
                account_id=account_id,
                job=import_id,
                action="already_ended",
                reason="the import no longer exists",
            )
        job = state.job
        if job.status in ("completed", "failed"):
            return Outcome(
                account_id=account_id,
                job=import_id,
                action="already_ended",
                reason=f"the import had ended {job.status}"
                + (f": {job.error}" if job.error else ""),
            )
        was = store.part(account_id, import_id, key)
        if was.landed == "done":
            _after(account_id, import_id, chunk)
            return Outcome(
                account_id=account_id,
                job=import_id,
                action="recorded",
                reason="the chunk was done after all; the import goes on",
            )
        reason = _dead_reason(state, chunk, was)
        partial = _partial(account_id, chunk, job)
        now = utcnow()
        counted = store.with_counts(
            job,
            store.Counts(
                rows=job.processed_rows + partial.rows,
                created=job.created + partial.created,
                updated=job.updated + partial.updated,
                failed=job.failed + partial.failed,
                companies=job.created_companies + partial.companies,
            ),
        )
        failed = counted.model_copy(
            update={"status": "failed", "error": reason, "updated_at": now, "completed_at": now}
        )
        if store.fail_dead(account_id, failed, key, partial, reason=reason):
            logger.error(
                "contact import failed: a chunk is a dead letter",
                extra={"import_id": import_id, "chunk": key, "reason": reason},
            )
            return Outcome(account_id=account_id, job=import_id, action="ended", reason=reason)
        # A chunk landed meanwhile, or the import ended: decide again on what it left.
    raise Conflict("the contact import kept changing while it was being failed")


def _dead_reason(state: store.Progress, chunk: ImportChunk, was: store.Part) -> str:
    if chunk.tail is not None:
        which = f"part {chunk.tail + 1} of {max(1, state.tails)} of the rows left to the end"
    else:
        which = f"chunk {chunk.start_row // CHUNK_ROWS + 1} of {max(1, state.parts)}"
    if was.failed_attempts:
        attempts = was.failed_attempts
        plural = "attempt" if attempts == 1 else "attempts"
        return f"{which} failed after {attempts} {plural}: {was.last_error}"
    # No failure was counted: the worker was stopped (a timeout, a crash) every time.
    return f"{which} never finished: the worker stopped before it could (a timeout or a crash)"


def _partial(account_id: str, chunk: ImportChunk, job: ContactImport) -> store.Counts:
    """What the rows of the chunk done before it failed came to (their receipts and reports)."""
    raw = files.read(file_key(account_id, chunk.import_id))
    if raw is None:
        return store.Counts()
    try:
        _, records = _records_of(raw, chunk, job)
    except CsvProblem:
        return store.Counts()
    tally = Counter(_done(account_id, chunk, records).values())
    return _counts(sum(tally.values()), tally)


def _prefetch(
    lookups: contacts.Lookups, header: list[str], records: list[Record], columns: list[ImportColumn]
) -> None:
    """Read the chunk's companies and phone numbers in batches rather than row by row.

    Only what can be read without the row's checks: numbers already international (a national
    one depends on its company's country); any row may still read for itself.
    """
    names: set[str] = set()
    phones: set[str] = set()
    for record in records:
        values = row_values(header, record.cells, columns)
        name = values.get("company")
        if isinstance(name, str) and name.strip():
            names.add(name)
        number = values.get("phone")
        if isinstance(number, str) and number.strip().startswith("+"):
            try:
                phone = phone_of(number, None)
            except (TalkturoError, ValueError):
                continue  # the row reports it
            if phone:
                phones.add(phone)
    lookups.prefetch(names, phones)
    # The contacts those numbers belong to: the rows updating them write in batches too.
    holders = {lookups.held(phone) for phone in phones}
    lookups.prefetch_contacts(holder for holder in holders if holder)


def _import_row(
    account_id: str,
    import_id: str,
    header: list[str],
    record: Record,
    columns: list[ImportColumn],
    lookups: contacts.Lookups,
    tally: Counter[str],
    batch: _Batch | None = None,
) -> str | None:
    """`created`, `updated` or `failed` (with the row's errors written to the report); None
    when the row's new contact waits in `batch` (which counts it when written)."""
    try:
        if record.problem:
            raise InvalidRequest(record.problem)
        values = row_values(header, record.cells, columns)
        return _apply_row(account_id, import_id, record, values, lookups, tally, batch)
    except ValidationError as invalid:
        errors = [_detail(error) for error in invalid.errors()]
    except TalkturoError as refused:
        errors = [RowErrorDetail(field=refused.param, message=refused.message)]
    store.record_error(
        account_id,
        import_id,
        ImportRowError(row=record.row, values=reported_values(header, record.cells), errors=errors),
    )
    return "failed"


class _Batch:
    """A chunk's contact writes, several to a transaction rather than one by one.

    Rows creating a contact wait here, each with its receipt, and so do rows updating one (with
    the contact as read ahead: its write is conditioned on that version). When a transaction
    of them is cancelled (a receipt another delivery wrote, a phone taken meanwhile, a company
    gone, a contact changed since it was read, contention) or fails otherwise, its rows are
    done again one by one like any row, which reads afresh and says which failed and why. A
    row whose phone waits here already writes what waits first, so that it updates the contact
    the earlier row creates or changes, as it would row by row.
    """

    def __init__(
        self,
        account_id: str,
        import_id: str,
        header: list[str],
        columns: list[ImportColumn],
        lookups: contacts.Lookups,
        tally: Counter[str],
    ) -> None:
        self.account_id, self.import_id = account_id, import_id
        self.header, self.columns = header, columns
        self.lookups, self.tally = lookups, tally
        self._waiting: list[tuple[Record, contact_store.Together]] = []
        self._phones: set[str] = set()

    def holds(self, phone: str | None) -> bool:
        return phone in self._phones

    def add(
        self,
        record: Record,
        contact: Contact,
        receipt: Any,
        item: contact_store.ContactItem | None = None,
        before: Contact | None = None,
    ) -> None:
        """A new contact, or (with `item` and `before`, as read) a changed one."""
        self._waiting.append((record, (contact, receipt, item, before)))
        for phone in (contact.phone, before.phone if before else None):
            if phone:
                self._phones.add(phone)
        if len(self._waiting) >= _BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        waiting, self._waiting, self._phones = self._waiting, [], set()
        while waiting:
            try:
                count = contact_store.write_together(
                    self.account_id, [entry for _, entry in waiting]
                )
            except Exception as error:  # noqa: BLE001 - the rows, one by one, say what it was
                # Refused, or failed (a table away, say): row by row, the rows before a failing
                # one still land and count, and the failing one raises its own error again.
                count = error.count if isinstance(error, NotTogether) else len(waiting)
                for record, _ in waiting[:count]:
                    outcome = _import_row(
                        self.account_id,
                        self.import_id,
                        self.header,
                        record,
                        self.columns,
                        self.lookups,
                        self.tally,
                    )
                    self.tally[outcome or "failed"] += 1
            else:
                for _, (contact, _, _, before) in waiting[:count]:
                    if contact.phone:
                        self.lookups.now_held(contact.phone, contact.id)
                    self.tally["created" if before is None else "updated"] += 1
            waiting = waiting[count:]


# Rows kept waiting before they are written (a transaction takes as many as fit in it).
_BATCH_ROWS = 50


def _apply_row(
    account_id: str,
    import_id: str,
    record: Record,
    values: dict[str, Any],
    lookups: contacts.Lookups,
    tally: Counter[str],
    batch: _Batch | None = None,
) -> str | None:
    row = record.row
    company_name = values.pop("company", None)
    # Every cell is checked before anything is written: a bad row creates no company.
    if company_name is not None:
        try:
            CompanyCreate(name=company_name)
        except ValidationError as invalid:
            raise InvalidRequest(_detail(invalid.errors()[0]).message, param="company") from None
    update = ContactUpdate.model_validate(values)
    company = lookups.company_named(company_name) if company_name is not None else None
    country = company.country if company else None  # a company still to create has none
    phone = phone_of(values.get("phone"), country)
    if batch is not None and batch.holds(phone):
        batch.flush()  # this row updates the contact a waiting row creates
    existing = lookups.holder_of(phone) if phone else None
    # Validated once: the company's id, added below, is the only value still to come.
    create = ContactCreate.model_validate(values) if existing is None else None
    if values.get("secondary_phone") and (company_name is not None or existing is None):
        # Read in the country the write will use. A row updating a contact without a company
        # cell uses the contact's company's; the write checks it before writing anything.
        phone_of(values["secondary_phone"], country, param="secondary_phone")
    if values.get("custom"):
        lookups.custom(values["custom"])

    if company_name is not None:
        if company is None:
            company, created = lookups.company_for(company_name)
            tally["company"] += int(created)
        joined = {"company_id": company.id}
        update = update.model_copy(update=joined)
        create = create.model_copy(update=joined) if create is not None else None
    outcome = "updated" if existing else "created"
    receipt = store.receipt(account_id, import_id, row, outcome)
    if batch is not None and create is not None:
        batch.add(record, contacts.new_contact(account_id, create, lookups), receipt)
        return None
    item = lookups.take_item(existing) if batch is not None and existing else None
    if batch is not None and item is not None:
        # The contact as read ahead: its write waits too, conditioned on that version. A row
        # the change refuses (as `update` would) is reported before anything is written.
        before = contact_store.of_item(item)
        change = contacts.changer(update, lookups, may_lift_dnc=False)
        batch.add(record, change(before), receipt, item, before)
        return None
    try:
        if existing:
            # An import may set do-not-call but never lifts it (docs/crm.md, CSV import).
            contacts.update(
                account_id,
                existing,
                update,
                lookups=lookups,
                receipt=receipt,
                may_lift_dnc=False,
            )
        else:
            assert create is not None
            contact = contacts.create(account_id, create, lookups=lookups, receipt=receipt)
            if phone:
                lookups.now_held(phone, contact.id)
    except ReceiptExists:
        # Another delivery of this chunk did this very row meanwhile: count what it did.
        return store.finished_rows(account_id, import_id, row, row).get(row, outcome)
    return outcome


def _detail(error: Any) -> RowErrorDetail:
    field = ".".join(str(part) for part in error.get("loc", ())) or None
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return RowErrorDetail(field=field, message=message)
