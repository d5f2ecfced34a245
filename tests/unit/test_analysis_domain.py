"""The analysis configuration, its results and the pure checks on extracted values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from talkturo.domain.analysis import (
    STANDARD_FIELDS,
    AnalysisConfig,
    ExtractionField,
    FieldSpec,
    KnownField,
    SuccessRubric,
    analysis_issues,
    date_candidates,
    emails_in,
    find_evidence,
    numbers_in,
    quote_problem,
    spoken_digits,
    validate_value,
)

# A Thursday.
CALL_DATE = date(2026, 3, 5)


@dataclass
class Message:
    role: str
    text: str


def _loc(error: ValidationError) -> str:
    detail = error.errors()[0]
    return ".".join(str(part) for part in detail["loc"])


# --------------------------------------------------------------------------- configuration


def test_defaults_are_a_pass_fail_analysis_without_extraction() -> None:
    config = AnalysisConfig()
    assert config.enabled is True
    assert config.success_rubric.type == "pass_fail"
    assert config.extraction_fields == []
    assert config.create_missing_fields is False


def test_an_extraction_field_defaults_to_the_contact_and_fill_if_empty() -> None:
    field = ExtractionField(key="email", description="their email")
    assert (field.target, field.write_policy, field.standard) == ("contact", "fill_if_empty", True)


@pytest.mark.parametrize(
    ("raw", "where", "message"),
    [
        ({"key": "Email", "description": "x"}, "key", "snake_case"),
        ({"key": "email", "description": ""}, "description", "at least 1"),
        ({"key": "email", "description": "x", "type": "number"}, "type", "standard field"),
        ({"key": "phone", "description": "x"}, "key", "secondary_phone"),
        (
            {"key": "budget", "description": "x", "type": "text", "options": ["a"]},
            "options",
            "only",
        ),
        (
            {"key": "tier", "description": "x", "type": "select", "options": ["A", "a"]},
            "options",
            "unique",
        ),
        ({"key": "lead_status", "description": "x", "options": ["hot"]}, "options", "standard"),
        ({"key": "email", "description": "x", "write_policy": "merge"}, "write_policy", ""),
        ({"target": "company", "key": "name", "description": "x"}, "key", "identity"),
    ],
)
def test_extraction_field_errors_name_the_field(
    raw: dict[str, Any], where: str, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        AnalysisConfig.model_validate(
            {"extraction_fields": [{"key": "notes", "description": "n"}, raw]}
        )
    assert _loc(caught.value) == f"extraction_fields.1.{where}"
    assert message in str(caught.value)


def test_an_extraction_field_is_listed_once_per_target() -> None:
    fields = [
        {"key": "notes", "description": "a"},
        {"target": "company", "key": "notes", "description": "b"},
        {"key": "notes", "description": "c"},
    ]
    with pytest.raises(ValidationError, match=r"\[2\] contact.notes is listed twice"):
        AnalysisConfig.model_validate({"extraction_fields": fields})


def test_bounds_on_fields_and_dispositions() -> None:
    many = [{"key": f"field_{n}", "description": "x", "type": "text"} for n in range(31)]
    with pytest.raises(ValidationError, match="at most 30"):
        AnalysisConfig.model_validate({"extraction_fields": many})
    with pytest.raises(ValidationError, match="at most 20"):
        AnalysisConfig(dispositions=[f"label {n}" for n in range(21)])
    with pytest.raises(ValidationError, match="listed twice"):
        AnalysisConfig(dispositions=["Booked", "booked "])
    assert AnalysisConfig(dispositions=[" booked ", "call  back"]).dispositions == [
        "booked",
        "call back",
    ]


def test_structured_data_schema_is_a_bounded_local_object_schema() -> None:
    schema = {"type": "object", "properties": {"budget": {"type": "number"}}}
    assert AnalysisConfig(structured_data_schema=schema).structured_data_schema == schema
    for bad, message in [
        ({"type": "array"}, '"type": "object"'),
        ({"type": "object", "properties": {"a": {"type": "nope"}}}, "Draft 2020-12"),
        ({"type": "object", "$ref": "https://example.com/s.json"}, "may only reference"),
        ({"type": "object", "description": "x" * 20_000}, "bytes of JSON"),
    ]:
        with pytest.raises(ValidationError, match=message) as caught:
            AnalysisConfig(structured_data_schema=bad)
        assert _loc(caught.value) == "structured_data_schema"


def test_rubrics() -> None:
    scale = SuccessRubric(type="numeric_scale", min=0, max=5, pass_at=3)
    assert scale.passing_score == 3
    assert SuccessRubric(type="numeric_scale").passing_score == 10
    checklist = SuccessRubric(type="checklist", items=["asked budget", "booked"])
    assert checklist.items_to_pass == 2
    assert SuccessRubric(type="checklist", items=["a", "b"], pass_count=1).items_to_pass == 1
    for raw, where in [
        ({"type": "numeric_scale", "min": 5, "max": 5}, "max"),
        ({"type": "numeric_scale", "min": 1, "max": 5, "pass_at": 6}, "pass_at"),
        ({"type": "pass_fail", "pass_at": 3}, "pass_at"),
        ({"type": "checklist"}, "items"),
        ({"type": "checklist", "items": ["a"], "pass_count": 2}, "pass_count"),
        ({"type": "pass_fail", "items": ["a"]}, "items"),
    ]:
        with pytest.raises(ValidationError) as caught:
            SuccessRubric.model_validate(raw)
        assert _loc(caught.value) == where


def test_issues_with_the_accounts_custom_fields() -> None:
    known = [KnownField(target="contact", key="budget", type="number")]
    config = AnalysisConfig.model_validate(
        {
            "extraction_fields": [
                {"key": "email", "description": "x"},
                {"key": "budget", "description": "x", "type": "text"},
                {"key": "plan", "description": "x"},
            ]
        }
    )
    assert list(analysis_issues(config, known)) == [
        ("analysis.extraction_fields[1].type", "the custom field 'budget' is of type number"),
        (
            "analysis.extraction_fields[2].key",
            "no contact custom field 'plan'; create it first or set analysis.create_missing_fields",
        ),
    ]
    config.create_missing_fields = True
    assert list(analysis_issues(config, known))[1][0] == "analysis.extraction_fields[2].type"
    tier = AnalysisConfig.model_validate(
        {
            "create_missing_fields": True,
            "extraction_fields": [{"key": "tier", "description": "x", "type": "select"}],
        }
    )
    assert [p for p, _ in analysis_issues(tier)] == ["analysis.extraction_fields[0].options"]


# --------------------------------------------------------------------------- evidence


def test_evidence_is_only_the_callers_words_normalised() -> None:
    messages = [
        Message("assistant", "Is your email john@example.com?"),
        Message("user", "Yes, it's  JOHN at example-dot com!"),
        Message("tool", "booked for Tuesday"),
        Message("user", "And call me next"),
        Message("user", "Tuesday, please."),
    ]
    assert find_evidence("it's john at example dot com", messages) == 1
    assert find_evidence("john@example.com", messages) is None  # said by the assistant only
    assert find_evidence("booked for Tuesday", messages) is None  # a tool's text
    assert find_evidence("call me next Tuesday", messages) == 3  # over a transcriber's split
    assert find_evidence("ohn at", messages) is None  # whole words only
    assert find_evidence("  ", messages) is None


# --------------------------------------------------------------------------- spoken forms


def test_spoken_emails_digits_and_numbers() -> None:
    assert emails_in("it's john dot smith at gmail dot com, thanks") == ["john.smith@gmail.com"]
    assert emails_in("j o h n at example dot co dot uk") == ["john@example.co.uk"]
    assert emails_in("write to ANA@Example.org.") == ["ana@example.org"]
    assert emails_in("no address here") == []
    assert spoken_digits("five five five, oh one two three") == "5550123"
    assert spoken_digits("double four 12") == "4412"
    assert numbers_in("about twenty five people and 1,200 clients") == [1200.0, 25.0]
    assert numbers_in("two hundred and fifty, a dozen, 20k") == [20000.0, 250.0, 12.0]


def test_dates_are_anchored_to_the_call_date() -> None:
    assert date_candidates("tomorrow", CALL_DATE) == [date(2026, 3, 6)]
    assert date_candidates("the day after tomorrow", CALL_DATE) == [date(2026, 3, 7)]
    assert date_candidates("Tuesday works", CALL_DATE) == [date(2026, 3, 10)]
    assert date_candidates("this Thursday", CALL_DATE) == [date(2026, 3, 12)]
    assert date_candidates("next Tuesday", CALL_DATE) == [date(2026, 3, 10), date(2026, 3, 17)]
    assert date_candidates("in two weeks", CALL_DATE) == [date(2026, 3, 19)]
    assert date_candidates("March 20th", CALL_DATE) == [date(2026, 3, 20)]
    assert date_candidates("the twenty first of March", CALL_DATE) == [date(2026, 3, 21)]
    assert date_candidates("January 2nd", CALL_DATE) == [date(2027, 1, 2)]
    assert date_candidates("2026-04-01", CALL_DATE) == [date(2026, 4, 1)]
    assert date_candidates("sometime soon", CALL_DATE) == []


# --------------------------------------------------------------------------- values


def test_values_take_their_canonical_form() -> None:
    def check(kind: Any, value: Any, **kwargs: Any) -> Any:
        return validate_value(kind, kwargs.pop("options", None), value, CALL_DATE, **kwargs)

    assert check("text", "  a  b ") == "a b"
    assert check("number", "1,200") == 1200
    assert check("number", 2.5) == 2.5
    assert check("date", "2026-03-10") == "2026-03-10"
    assert check("date", "next Friday") == "2026-03-06"
    assert check("boolean", "Yes") is True
    assert check("boolean", False) is False
    assert check("select", "gold plan", options=["Gold Plan", "Silver"]) == "Gold Plan"
    assert check("text", "John at Example dot com", format="email") == "John@example.com".lower()
    assert check("text", "four one five five five five oh one two three", format="phone") == (
        "+14155550123"
    )
    assert check("text", "example.com", format="url") == "https://example.com"
    assert check("text", "Europe/Paris", format="timezone") == "Europe/Paris"


@pytest.mark.parametrize(
    ("kind", "value", "kwargs", "message"),
    [
        ("text", None, {}, "empty"),
        ("text", "   ", {}, "empty"),
        ("text", "x" * 11, {"max_length": 10}, "at most 10"),
        ("text", {"a": 1}, {}, "must be text"),
        ("number", "many", {}, "number"),
        ("number", True, {}, "number"),
        ("number", "nan", {}, "finite"),
        ("date", "someday", {}, "YYYY-MM-DD"),
        ("date", "1066-10-14", {}, "plausible"),
        ("boolean", "maybe", {}, "true or false"),
        ("select", "other", {"options": ["Gold", "Silver"]}, "one of: Gold, Silver"),
        ("text", "not an email", {"format": "email"}, "one email"),
        ("text", "call me", {"format": "phone"}, "phone"),
        ("text", "Mars/Olympus", {"format": "timezone"}, "IANA"),
        ("text", "javascript:alert(1)", {"format": "url"}, "web address"),
    ],
)
def test_values_refused_say_why(
    kind: Any, value: Any, kwargs: dict[str, Any], message: str
) -> None:
    options = kwargs.pop("options", None)
    with pytest.raises(ValueError, match=message):
        validate_value(kind, options, value, CALL_DATE, **kwargs)


def test_a_value_must_be_readable_from_its_quote() -> None:
    email = STANDARD_FIELDS["contact"]["email"]
    phone = STANDARD_FIELDS["contact"]["secondary_phone"]
    number, when = FieldSpec(type="number"), FieldSpec(type="date")
    assert quote_problem(email, "john@example.com", "john at example dot com", CALL_DATE) is None
    assert quote_problem(email, "jon@example.com", "john at example dot com", CALL_DATE)
    assert quote_problem(email, "john@example.com", "my usual address", CALL_DATE)
    said = "it's four one five, five five five, oh one two three"
    assert quote_problem(phone, "+14155550123", said, CALL_DATE) is None
    assert quote_problem(phone, "+14155550124", said, CALL_DATE)
    assert quote_problem(number, 25, "we're twenty five people", CALL_DATE) is None
    assert quote_problem(number, 30, "we're twenty five people", CALL_DATE)
    assert quote_problem(number, 1, "just me", CALL_DATE) is None  # not checkable
    assert quote_problem(when, "2026-03-17", "next Tuesday", CALL_DATE) is None
    assert quote_problem(when, "2026-03-11", "next Tuesday", CALL_DATE)
    assert quote_problem(FieldSpec(type="text"), "anything", "whatever", CALL_DATE) is None
