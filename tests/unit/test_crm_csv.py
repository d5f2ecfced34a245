"""Reading a contact CSV: the header, the rows, the values each row gives."""

from __future__ import annotations

import csv

import pytest
from hypothesis import given
from hypothesis import strategies as st

from talkturo.domain.contact_imports import (
    REPORT_VALUE_MAX,
    CsvProblem,
    Record,
    RowErrorDetail,
    column_name,
    map_columns,
    phone_key,
    read_chunks,
    read_csv,
    read_records,
    reported_values,
    row_values,
    tail_rows,
)


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("First Name", "first_name"),
        ("first-name", "first_name"),
        ("  LAST   name ", "last_name"),
        ("Secondary - Phone", "secondary_phone"),
        ("custom.Shoe Size", "custom.shoe_size"),
    ],
)
def test_header_names_are_normalised(header: str, name: str) -> None:
    assert column_name(header) == name


def test_columns_map_to_fields_custom_keys_and_aliases() -> None:
    # Given a header with known names, aliases, custom keys (bare and prefixed) and strangers
    header = [
        "First Name",
        "SURNAME",
        "E-mail",
        "Company",
        "Tags",
        "shoe_size",
        "custom.Tier",
        "Favourite colour",
        "DNC",
    ]
    # When mapped with the account's custom keys
    columns, unknown = map_columns(header, {"shoe_size", "tier"})
    # Then each known column names its field and the stranger is reported
    assert [(c.header, c.field) for c in columns] == [
        ("First Name", "first_name"),
        ("SURNAME", "last_name"),
        ("E-mail", "email"),
        ("Company", "company"),
        ("Tags", "tags"),
        ("shoe_size", "custom.shoe_size"),
        ("custom.Tier", "custom.tier"),
        ("DNC", "do_not_call"),
    ]
    assert unknown == ["Favourite colour"]


def test_a_field_given_twice_takes_the_first_column() -> None:
    columns, unknown = map_columns(["Phone", "phone number", "custom.nope"], set())
    assert [(c.header, c.field) for c in columns] == [("Phone", "phone")]
    assert unknown == ["phone number", "custom.nope"]


def test_bom_and_row_numbers_as_a_spreadsheet_shows_them() -> None:
    # Given a UTF-8 file with a BOM, a blank line and a quoted multi-line cell
    raw = '\ufefffirst_name,notes\nAda,"two\nlines"\n\n,\nGrace,x\n'.encode()
    # When read
    parsed = read_csv(raw)
    # Then the header has no BOM, blank rows are skipped, and rows keep their sheet numbers
    assert parsed.header == ["first_name", "notes"]
    assert [(r.row, r.cells) for r in parsed.records] == [
        (2, ["Ada", "two\nlines"]),
        (5, ["Grace", "x"]),
    ]


def test_semicolon_separated_files_are_read() -> None:
    parsed = read_csv(b"first_name;phone\nAda;+14155550123\n")
    assert parsed.records[0].cells == ["Ada", "+14155550123"]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"", "empty"),
        (b"  \n\n", "empty"),
        (b",,,\nAda,x\n", "name the columns"),
        ("first_name\nJos\xe9\n".encode("latin-1"), "UTF-8"),
        (b'"first_name,phone\nAda,+14155550123\n', "first row is not valid CSV"),
    ],
)
def test_unreadable_files_say_why(raw: bytes, problem: str) -> None:
    with pytest.raises(CsvProblem, match=problem):
        read_csv(raw)


def test_a_quote_never_closed_is_a_row_problem_not_a_garbage_row() -> None:
    # Given a file whose third row opens a quote that nothing closes
    raw = b'first_name,phone\nAda,+14155550123\n"Bob,+14155550124\nCy,+14155550125\n'
    # When read
    parsed = read_csv(raw)
    # Then the rows before it are read, and it is one record with a problem, not a contact
    # whose first name is the rest of the file
    assert [(r.row, r.cells, r.problem) for r in parsed.records[:1]] == [
        (2, ["Ada", "+14155550123"], None)
    ]
    broken = parsed.records[1]
    assert (broken.row, len(parsed.records)) == (3, 2)
    assert broken.problem is not None and "never closed" in broken.problem
    assert broken.cells == ['"Bob,+14155550124\nCy,+14155550125\n']


def test_a_malformed_row_is_a_problem_and_the_rows_after_it_are_read() -> None:
    parsed = read_csv(b'first_name,phone\n"Ada"x,+14155550123\nBob,+14155550124\n')
    assert [(r.row, r.problem is not None) for r in parsed.records] == [(2, True), (3, False)]
    assert parsed.records[1].cells == ["Bob", "+14155550124"]


def test_a_value_over_the_parser_limit_stops_the_reading_at_its_row() -> None:
    # A cell too long to hold, or a quote never closed in a long file: the row is a problem
    # and what follows it is not read (the parser cannot tell where the row ends).
    raw = b"first_name\nAda\n" + b"x" * 200_000 + b"\nBob\n"
    parsed = read_csv(raw)
    assert [r.row for r in parsed.records] == [2, 3]
    problem = parsed.records[1].problem
    assert problem is not None and str(csv.field_size_limit()) in problem


# Pieces of a CSV file: plain rows, blank ones, quoted cells over several lines, CRLF and lone
# CR endings, malformed rows, a quote never closed, a semicolon file's header.
_PIECES = [
    "Ada,+14155550123\n",
    "Bob,\r\n",
    "\n",
    ",,\n",
    '"Cy\nthe second line",x\n',
    '"Dee, ""quoted""",y\r',
    '"Ed"x,broken\n',
    '"never closed,z\n',
    "  ,  \n",
    "Flo;+14155550124\n",
    "G\u00e9rard,\u00e9\n",
]


def _rows(records: list[Record]) -> list[tuple[int, list[str], str | None]]:
    return [(r.row, r.cells, r.problem) for r in records]


@given(
    header=st.sampled_from(["first_name,phone\n", "first_name;phone\r\n", '"first\nname",b\n']),
    pieces=st.lists(st.sampled_from(_PIECES), max_size=25),
    size=st.integers(min_value=1, max_value=6),
    bom=st.booleans(),
)
def test_reading_chunk_by_chunk_gives_the_records_of_reading_it_whole(
    header: str, pieces: list[str], size: int, bom: bool
) -> None:
    # Given any file
    raw = ("\ufeff" if bom else "").encode() + (header + "".join(pieces)).encode()
    whole = read_csv(raw)
    # When read `size` records at a time, each chunk going on where the one before stopped
    chunks: list[Record] = []
    parsed, resume = read_records(raw, limit=size)
    chunks += parsed.records
    while resume is not None:
        assert parsed.header == whole.header
        parsed, resume = read_records(raw, resume=resume, limit=size)
        assert len(parsed.records) <= size
        chunks += parsed.records
    # Then those are the records of the whole file, with the same rows and problems; and a
    # chunk found by passing over the records before it is the same chunk
    assert _rows(chunks) == _rows(whole.records)
    for start in range(0, len(whole.records) + 1, size):
        found, _ = read_records(raw, skip=start, limit=size)
        assert _rows(found.records) == _rows(whole.records[start : start + size])
    # And the starts the upload finds for its chunks read each chunk alike, on its own
    planned, starts = read_chunks(raw, size)
    assert _rows(planned.records) == _rows(whole.records)
    assert len(starts) == -(-len(whole.records) // size)
    for index, begin in enumerate(starts):
        found, _ = read_records(raw, resume=begin, limit=size)
        assert _rows(found.records) == _rows(whole.records[index * size : (index + 1) * size])


def test_row_values_keep_non_empty_cells_in_api_shape() -> None:
    header = ["First Name", "Tags", "Status", "custom.tier", "Email", "Company"]
    columns, _ = map_columns(header, {"tier"})
    values = row_values(
        header, ["  Ada ", "vip; lead ,, x", "Qualified", "gold", "", "Acme"], columns
    )
    assert values == {
        "first_name": "Ada",
        "tags": ["vip", "lead", "x"],
        "lead_status": "qualified",
        "custom": {"tier": "gold"},
        "company": "Acme",
    }


def test_a_short_row_gives_only_what_it_has() -> None:
    header = ["first_name", "last_name", "phone"]
    columns, _ = map_columns(header, set())
    assert row_values(header, ["Ada"], columns) == {"first_name": "Ada"}


def test_reported_values_are_bounded() -> None:
    report = reported_values(["a", "", "c"], ["x" * 1000, "y"])
    assert report == {"a": "x" * REPORT_VALUE_MAX, "column_2": "y", "c": ""}


@pytest.mark.parametrize(
    ("field", "message", "kept"),
    [
        ("phone", "phone: '12' is not a phone number", "'12' is not a phone number"),
        ("custom.tier", "custom.tier: must be one of: Gold", "must be one of: Gold"),
        ("email", "value is not a valid email address", "value is not a valid email address"),
        ("phone", "phone number taken by ct_1", "phone number taken by ct_1"),
        (None, "a contact needs at least a name", "a contact needs at least a name"),
    ],
)
def test_a_row_error_names_its_field_once(field: str | None, message: str, kept: str) -> None:
    # Given a problem whose message may start with its field (as API messages do)
    # When it goes into the row report / Then the field is named in `field` only
    assert RowErrorDetail(field=field, message=message).message == kept


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("+1 415 555 0101", "(415) 555-0101"),
        ("+14155550101", "415.555.0101 ext. 12"),
        ("+44 (0)20 7946 0000", "020 7946 0000"),
    ],
)
def test_two_ways_of_writing_one_number_share_a_phone_key(one: str, other: str) -> None:
    assert phone_key(one) == phone_key(other) is not None


def test_rows_whose_phone_is_in_two_chunks_are_left_to_the_tail_in_file_order() -> None:
    raw = (
        b"name,phone\n"
        b"a,+14155550101\nb,+14155550102\n"  # chunk 0
        b"c,4155550102\nd,\n"  # chunk 1: b's number again
        b"e,+14155550103\nf,+1 415 555 0103\n"  # chunk 2: twice in one chunk only
        b"g,(415) 555-0101\n"  # chunk 3: a's number again
    )
    parsed = read_csv(raw)
    columns, _ = map_columns(parsed.header, set())
    assert tail_rows(parsed, columns, 2) == [2, 3, 4, 8]
    assert tail_rows(parsed, [c for c in columns if c.field != "phone"], 2) == []
