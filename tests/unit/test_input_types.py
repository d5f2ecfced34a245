"""The shared input types: names without hidden characters, web links, ISO 8601 filters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from talkturo.domain.common import IsoDateTime, Name, WebUrl

names = TypeAdapter(Name)
urls = TypeAdapter(WebUrl)
dates = TypeAdapter(IsoDateTime)


@pytest.mark.parametrize(
    "hidden",
    ["\x00", "\x07", "\t", "\n", "\x1b", "\x7f", "\x85", "\x9b", "\u061c", "\u200e", "\u200f"]
    + [chr(c) for c in range(0x202A, 0x202F)]
    + [chr(c) for c in range(0x2066, 0x206A)],
)
def test_names_refuse_control_and_text_direction_characters(hidden: str) -> None:
    with pytest.raises(ValidationError, match=f"U\\+{ord(hidden):04X}"):
        names.validate_python(f"Acme{hidden}Corp")


@pytest.mark.parametrize(
    "name", ["Acme", "Zoë Müller-Lüdenscheidt", "李小龍", "עברית", "O'Brien & Co."]
)
def test_names_keep_every_script_and_punctuation(name: str) -> None:
    assert names.validate_python(name) == name


def test_the_name_pattern_in_the_schema_says_the_same() -> None:
    import re

    pattern = re.compile(names.json_schema()["pattern"])
    assert pattern.match("Zoë 李")
    assert not pattern.match("a\u202eb") and not pattern.match("a\x00b")


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox",
        "ftp://files.example",
        "//acme.example",
        "acme.example",
        "https://",
        "http:///path",
        "https://acme.example/\u202e",
    ],
)
def test_web_urls_are_http_or_https_with_a_host(url: str) -> None:
    with pytest.raises(ValidationError):
        urls.validate_python(url)


@pytest.mark.parametrize("url", ["https://acme.example", "http://acme.example:8080/a?b=c#d"])
def test_web_urls_are_kept_as_given(url: str) -> None:
    assert urls.validate_python(url) == url


@pytest.mark.parametrize("value", ["0.5", "1e3", "1700000000", "0", "", "yesterday", 1.5, 0])
def test_date_filters_refuse_anything_but_iso_8601(value: Any) -> None:
    with pytest.raises(ValidationError, match="ISO 8601"):
        dates.validate_python(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-31T09:30:00Z", datetime(2026, 1, 31, 9, 30, tzinfo=UTC)),
        ("2026-01-31T10:30:00+01:00", datetime(2026, 1, 31, 9, 30, tzinfo=UTC)),
        ("2026-01-31T09:30:00", datetime(2026, 1, 31, 9, 30, tzinfo=UTC)),
        ("2026-01-31", datetime(2026, 1, 31, tzinfo=UTC)),
    ],
)
def test_date_filters_read_iso_8601_and_no_offset_is_utc(value: str, expected: datetime) -> None:
    assert dates.validate_python(value) == expected
