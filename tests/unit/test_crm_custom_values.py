"""Custom field definitions and the values they allow."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from talkturo.domain.custom_fields import (
    CustomField,
    CustomFieldCreate,
    CustomFieldUpdate,
    CustomValueError,
    coerce_value,
    merge_custom,
    validate_custom,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def field(key: str, type_: str, options: list[str] | None = None) -> CustomField:
    return CustomField.model_validate(
        {
            "id": f"cf_{key}",
            "entity": "contact",
            "key": key,
            "label": key.title(),
            "type": type_,
            "options": options,
            "created_at": NOW,
            "updated_at": NOW,
        }
    )


@pytest.mark.parametrize(
    ("type_", "given", "canonical"),
    [
        ("text", "  hello ", "hello"),
        ("text", 42, "42"),
        ("number", 12, 12),
        ("number", "12", 12),
        ("number", " 12.5 ", 12.5),
        ("number", "1,200", 1200),
        ("number", 3.0, 3),
        ("date", "2026-03-01", "2026-03-01"),
        ("date", " 2026-03-01 ", "2026-03-01"),
        ("boolean", True, True),
        ("boolean", "yes", True),
        ("boolean", "TRUE", True),
        ("boolean", "1", True),
        ("boolean", 0, False),
        ("boolean", "no", False),
        ("boolean", "off", False),
    ],
)
def test_values_are_coerced_to_canonical_form(type_: str, given: Any, canonical: Any) -> None:
    # Given a value in any accepted form / When coerced / Then its canonical form
    result = coerce_value(field("f", type_), given)
    assert result == canonical
    assert type(result) is type(canonical)


def test_a_select_takes_the_options_own_spelling() -> None:
    plan = field("plan", "select", ["Gold", "Silver Plus"])
    assert coerce_value(plan, "gold") == "Gold"
    assert coerce_value(plan, " silver   plus ") == "Silver Plus"
    with pytest.raises(ValueError, match="one of: Gold, Silver Plus"):
        coerce_value(plan, "bronze")


@pytest.mark.parametrize(
    ("type_", "given"),
    [
        ("text", True),
        ("text", {"a": 1}),
        ("number", "twelve"),
        ("number", True),
        ("number", "nan"),
        ("number", "inf"),
        ("number", [1]),
        ("date", "01/03/2026"),
        ("date", "2026-02-30"),
        ("date", 20260301),
        ("boolean", "maybe"),
        ("boolean", 2),
        ("select", 1),
    ],
)
def test_wrong_types_are_refused(type_: str, given: Any) -> None:
    with pytest.raises(ValueError):
        coerce_value(field("f", type_, ["a"] if type_ == "select" else None), given)


def test_validate_names_the_key_of_an_unknown_field() -> None:
    # Given no definition for "shoe_size" / When a value is given for it / Then the error names it
    with pytest.raises(CustomValueError) as caught:
        validate_custom([field("age", "number")], {"age": 3, "shoe_size": 44})
    assert caught.value.param == "custom.shoe_size"


@pytest.mark.parametrize("removal", [None, "", "  "])
def test_removing_a_key_is_allowed_without_a_definition(removal: Any) -> None:
    # Given no definition for "shoe_size" (deleted, its values left on contacts)
    # When a change removes it / Then the removal passes, and merging drops the stored value
    changes = validate_custom([field("age", "number")], {"shoe_size": removal})
    assert changes == {"shoe_size": None}
    assert merge_custom({"shoe_size": 44, "age": 3}, changes) == {"age": 3}


def test_validate_names_the_key_of_a_wrong_value() -> None:
    with pytest.raises(CustomValueError) as caught:
        validate_custom([field("age", "number")], {"age": "old"})
    assert caught.value.param == "custom.age"
    assert "number" in caught.value.message


def test_null_and_empty_values_mean_remove_and_merge_drops_them() -> None:
    # Given stored values / When a change sets one to null and another anew
    changes = validate_custom(
        [field("age", "number"), field("vip", "boolean")], {"age": None, "vip": "yes"}
    )
    # Then the null removes the key and the new value is canonical
    assert changes == {"age": None, "vip": True}
    assert merge_custom({"age": 30, "other": "x"}, changes) == {"other": "x", "vip": True}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"entity": "contact", "key": "Shoe Size", "label": "x", "type": "text"}, "key"),
        ({"entity": "contact", "key": "1abc", "label": "x", "type": "text"}, "key"),
        ({"entity": "deal", "key": "a", "label": "x", "type": "text"}, "entity"),
        ({"entity": "contact", "key": "a", "label": "x", "type": "colour"}, "type"),
        ({"entity": "contact", "key": "a", "label": "x", "type": "select"}, "options"),
        (
            {"entity": "contact", "key": "a", "label": "x", "type": "select", "options": []},
            "options",
        ),
        (
            {
                "entity": "contact",
                "key": "a",
                "label": "x",
                "type": "select",
                "options": ["A", "a"],
            },
            "options",
        ),
        (
            {"entity": "contact", "key": "a", "label": "x", "type": "text", "options": ["A"]},
            "options",
        ),
        ({"entity": "contact", "key": "a", "label": "", "type": "text"}, "label"),
    ],
)
def test_definitions_are_checked_field_by_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CustomFieldCreate.model_validate(body)
    assert caught.value.errors()[0]["loc"][0] == param


def test_a_good_select_definition_keeps_its_options_trimmed() -> None:
    created = CustomFieldCreate.model_validate(
        {
            "entity": "company",
            "key": "tier_2",
            "label": "Tier",
            "type": "select",
            "options": [" Gold ", "Silver"],
        }
    )
    assert created.options == ["Gold", "Silver"]


def test_an_update_cannot_null_the_label() -> None:
    with pytest.raises(ValidationError):
        CustomFieldUpdate.model_validate({"label": None})
