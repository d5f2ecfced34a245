"""Contact import from CSV: the job, its per-row report, and reading the file.

A file is read the way a spreadsheet shows it: the header is row 1, the first record row 2.
Columns are recognised by name (case-insensitive; spaces and dashes count as underscores);
custom fields by their key or `custom.<key>`. Rows whose cells are all empty are skipped.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

MAX_BYTES = 5 * 1024 * 1024
CHUNK_ROWS = 200
# A reported value is cut to this length; the report is a hint, not a copy of the file.
REPORT_VALUE_MAX = 200
REPORT_COLUMNS_MAX = 60

ImportStatus = Literal["pending", "processing", "completed", "failed"]

CONTACT_COLUMNS = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "secondary_phone",
    "job_title",
    "company",
    "lead_status",
    "timezone",
    "source",
    "tags",
    "notes",
    "do_not_call",
)
# Spellings spreadsheets commonly use for the same columns.
ALIASES = {
    "firstname": "first_name",
    "first": "first_name",
    "given_name": "first_name",
    "lastname": "last_name",
    "last": "last_name",
    "surname": "last_name",
    "family_name": "last_name",
    "e_mail": "email",
    "email_address": "email",
    "phone_number": "phone",
    "mobile": "phone",
    "title": "job_title",
    "company_name": "company",
    "status": "lead_status",
    "dnc": "do_not_call",
    "tag": "tags",
}
_SEPARATORS = re.compile(r"[\s\-]+")
_TAG_SPLIT = re.compile(r"[;,]")


class ImportColumn(BaseModel):
    header: str = Field(description="The column's name in the file.")
    field: str = Field(description="What it fills: a contact field, `company` or `custom.<key>`.")


class ContactImport(BaseModel):
    object: Literal["contact_import"] = "contact_import"
    id: str
    status: ImportStatus
    file_size: int = Field(description="Bytes.")
    total_rows: int = Field(description="Rows with at least one value (the header excluded).")
    processed_rows: int = 0
    created: int = 0
    updated: int = Field(default=0, description="Rows whose phone matched an existing contact.")
    failed: int = Field(default=0, description="Rows in the error report.")
    created_companies: int = Field(default=0, description="Companies created for unknown names.")
    columns: list[ImportColumn] = Field(default_factory=list)
    unknown_columns: list[str] = Field(
        default_factory=list, description="Headers that fill nothing (ignored)."
    )
    error: str | None = Field(default=None, description="Why the import failed, when it did.")
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None


class RowErrorDetail(BaseModel):
    """One problem of a rejected row. `message` says what is wrong without repeating `field`
    (the API's error messages start with their param; the report names it once, in `field`)."""

    field: str | None = Field(
        description="The field it is in: a contact field, `company` or `custom.<key>`; "
        "null for the row as a whole."
    )
    message: str

    @model_validator(mode="after")
    def _field_once(self) -> RowErrorDetail:
        if self.field:
            self.message = self.message.removeprefix(f"{self.field}: ") or self.message
        return self


class ImportRowError(BaseModel):
    object: Literal["contact_import_row_error"] = "contact_import_row_error"
    row: int = Field(description="The row number a spreadsheet shows (the header is row 1).")
    values: dict[str, str] = Field(description="The row's cells by header (long ones cut).")
    errors: list[RowErrorDetail]


class ImportChunk(BaseModel):
    """The queue message: process the rows of one chunk of an import.

    The upload queues every chunk at once, so chunks run side by side: chunk `start_row` (the
    index of its first record, 0 = the first) reads its records from `offset`, after the
    record of spreadsheet row `after_row`, and leaves the rows in `deferred` to the tail. The
    tail (`tail` = its part, 0 first) does those rows in file order once every other chunk is
    done: rows sharing a phone number across chunks, which must apply in file order (the later
    row wins). A message without `offset` reads from the file's start, passing over `start_row`
    records."""

    account_id: str
    import_id: str
    start_row: int = Field(ge=0)
    offset: int | None = Field(default=None, ge=0)
    after_row: int | None = Field(default=None, ge=1)
    deferred: list[int] = Field(default_factory=list)
    tail: int | None = Field(default=None, ge=0)

    @property
    def resume(self) -> Resume | None:
        if self.offset is None or self.after_row is None:
            return None
        return Resume(offset=self.offset, row=self.after_row)


class CsvProblem(ValueError):
    """The file cannot be imported at all."""


@dataclass
class Record:
    row: int  # spreadsheet row number
    cells: list[str]
    problem: str | None = None  # why the row cannot be read as CSV (it goes to the report)


@dataclass
class CsvFile:
    header: list[str]
    records: list[Record] = field(default_factory=list)


def decode(raw: bytes) -> str:
    if not raw.strip():
        raise CsvProblem("the file is empty")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CsvProblem("the file must be UTF-8 text (save it as 'CSV UTF-8')") from None


def _delimiter(text: str) -> str:
    """`,` unless the header line has more `;` or tabs (spreadsheets in some locales use them)."""
    first = text.split("\n", 1)[0]
    counts = {d: first.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


def _unreadable(error: csv.Error) -> tuple[str, bool]:
    """What the report says of a record that is not valid CSV, and whether reading goes on."""
    reason = str(error)
    if reason == "unexpected end of data":
        return 'a quoted value is never closed (a closing " is missing)', False
    if reason.startswith("field larger than field limit"):
        # A huge cell, or a quote never closed that swallows the rest of the file: the parser
        # cannot tell where this record ends, so nothing after it is read.
        limit = csv.field_size_limit()
        return (
            f'a value is longer than {limit} characters, or a closing " is missing; '
            "this row and the rows after it were not read",
            False,
        )
    return f"the row is not valid CSV: {reason}", True


@dataclass(frozen=True)
class Resume:
    """Where reading a file goes on: `offset` characters into its text, after the record of
    spreadsheet row `row` (what a chunk leaves for the next one, so that no chunk reads the
    file from its start)."""

    offset: int
    row: int


def read_csv(raw: bytes) -> CsvFile:
    """The header and the non-empty records, each with its spreadsheet row number.

    Strict parsing: a record that is not valid CSV (a quote never closed would otherwise swallow
    the rest of the file into one cell) becomes a record with a `problem`, its raw text as the
    only cell; the records before it are read as usual, and those after it when the parser
    can tell where it ends.
    """
    return read_records(raw)[0]


def read_records(
    raw: bytes, *, resume: Resume | None = None, skip: int = 0, limit: int | None = None
) -> tuple[CsvFile, Resume | None]:
    """`read_csv`'s header and records, from `resume` (else from the first record, passing
    over `skip` records), at most `limit` of them; and where the record after them starts
    (None when there is nothing more to read). The records are the very ones `read_csv` gives
    (`read_csv(raw).records[skip : skip + limit]`), as are their row numbers."""
    parsed, text, delimiter, first = _header(raw)
    for record, after in _records(text, delimiter, resume or first):
        if skip:
            skip -= 1
        else:
            parsed.records.append(record)
        if after is None:
            return parsed, None
        if limit is not None and len(parsed.records) >= limit:
            return parsed, after
    return parsed, None


def read_chunks(raw: bytes, size: int) -> tuple[CsvFile, list[Resume]]:
    """`read_csv`'s header and records, and where each chunk of `size` records starts: what
    `read_records(raw, resume=starts[i], limit=size)` reads is records[i * size : (i + 1) *
    size]. One reading of the file, at the upload, so that each chunk reads only its own."""
    parsed, text, delimiter, first = _header(raw)
    starts: list[Resume] = []
    before: Resume | None = first
    for record, after in _records(text, delimiter, first):
        if len(parsed.records) % size == 0 and before is not None:
            starts.append(before)
        parsed.records.append(record)
        before = after
    return parsed, starts


def _header(raw: bytes) -> tuple[CsvFile, str, str, Resume]:
    """The file's header (its first record, wherever reading starts), its text and delimiter,
    and where its first record starts."""
    text = decode(raw)
    delimiter = _delimiter(text)
    header_lines = _Lines(text, 0)
    try:
        header = next(csv.reader(header_lines, delimiter=delimiter, strict=True), None)
    except csv.Error as error:
        raise CsvProblem(f"the first row is not valid CSV: {error}") from None
    if header is None or not any(cell.strip() for cell in header):
        raise CsvProblem("the first row must name the columns")
    parsed = CsvFile(header=[cell.strip() for cell in header])
    return parsed, text, delimiter, Resume(offset=header_lines.offset, row=1)


def _records(text: str, delimiter: str, start: Resume) -> Iterator[tuple[Record, Resume | None]]:
    """The non-empty records from `start` on, each with where reading goes on after it (None
    after a record the parser cannot tell the end of: nothing after it is read)."""
    lines = _Lines(text, start.offset)
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    row = start.row
    while True:
        row += 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            problem, read_on = _unreadable(error)
            record = Record(row=row, cells=["".join(lines.taken)], problem=problem)
            lines.taken.clear()
            yield record, Resume(offset=lines.offset, row=row) if read_on else None
            if not read_on:
                return
            continue
        lines.taken.clear()
        if any(cell.strip() for cell in cells):
            yield Record(row=row, cells=cells), Resume(offset=lines.offset, row=row)


class _Lines:
    """The lines of `text` from `offset` on (ends kept), for the CSV reader: which it took for
    the record it reads (`taken`), and where in `text` the next line starts (`offset`)."""

    def __init__(self, text: str, offset: int) -> None:
        self._lines = io.StringIO(text[offset:], newline="")
        self.offset = offset
        self.taken: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self._lines.readline()
        if not line:
            raise StopIteration
        self.offset += len(line)
        self.taken.append(line)
        return line


def column_name(header: str) -> str:
    return _SEPARATORS.sub("_", header.strip().casefold()).strip("_")


def map_columns(
    header: list[str], custom_keys: Iterable[str]
) -> tuple[list[ImportColumn], list[str]]:
    """Which header fills which field, and the headers that fill nothing.

    A field filled by two columns takes the first; the second is reported as unknown.
    """
    keys = set(custom_keys)
    columns: list[ImportColumn] = []
    unknown: list[str] = []
    taken: set[str] = set()
    for header_cell in header:
        name = column_name(header_cell)
        target: str | None = None
        if name.startswith("custom."):
            key = column_name(name.removeprefix("custom."))
            target = f"custom.{key}" if key in keys else None
        elif name in CONTACT_COLUMNS or name in ALIASES:
            target = ALIASES.get(name, name)
        elif name in keys:
            target = f"custom.{name}"
        if target is None or target in taken:
            if header_cell:
                unknown.append(header_cell)
            continue
        taken.add(target)
        columns.append(ImportColumn(header=header_cell, field=target))
    return columns, unknown


def row_values(header: list[str], cells: list[str], columns: list[ImportColumn]) -> dict[str, Any]:
    """The non-empty cells of a row, by the field they fill, in API shape.

    `tags` becomes a list (split on `;` or `,`), `custom.<key>` values go into `custom`; every
    other value stays text for the contact model to validate.
    """
    by_header = {name: index for index, name in reversed(list(enumerate(header)))}
    values: dict[str, Any] = {}
    for column in columns:
        index = by_header[column.header]
        cell = cells[index].strip() if index < len(cells) else ""
        if not cell:
            continue
        if column.field == "tags":
            values["tags"] = [tag.strip() for tag in _TAG_SPLIT.split(cell) if tag.strip()]
        elif column.field.startswith("custom."):
            values.setdefault("custom", {})[column.field.removeprefix("custom.")] = cell
        elif column.field == "lead_status":
            values["lead_status"] = cell.casefold()
        else:
            values[column.field] = cell
    return values


# Where a phone cell's number ends: an extension, a pause, a list of numbers.
_PHONE_END = re.compile(r"[A-Za-z#,;*]")


def phone_key(cell: str) -> str | None:
    """What cells naming one number share, whatever their format: its last 8 digits before
    any extension. Different numbers may share one too (their rows then wait for the tail,
    which costs time, not correctness)."""
    number = _PHONE_END.split(cell, 1)[0]
    digits = "".join(c for c in number if c.isdigit())
    return digits[-8:] or None


def tail_rows(parsed: CsvFile, columns: list[ImportColumn], size: int) -> list[int]:
    """The rows left to the tail, in file order: those whose phone (by `phone_key`) is in more
    than one chunk of `size` records. Chunks run side by side; these rows must apply in file
    order, as each updates the contact the one before it created or changed."""
    phone = next((c.header for c in columns if c.field == "phone"), None)
    if phone is None:
        return []
    index = parsed.header.index(phone)
    keyed: list[tuple[int, str]] = []
    chunks: dict[str, set[int]] = {}
    for position, record in enumerate(parsed.records):
        if record.problem or index >= len(record.cells):
            continue
        key = phone_key(record.cells[index])
        if key:
            keyed.append((record.row, key))
            chunks.setdefault(key, set()).add(position // size)
    return [row for row, key in keyed if len(chunks[key]) > 1]


def reported_values(header: list[str], cells: list[str]) -> dict[str, str]:
    """A row's raw cells for the error report, keyed by header, bounded in size."""
    report: dict[str, str] = {}
    for index, name in enumerate(header[:REPORT_COLUMNS_MAX]):
        cell = cells[index] if index < len(cells) else ""
        report.setdefault(name or f"column_{index + 1}", cell[:REPORT_VALUE_MAX])
    return report
