"""Custom field definitions (per account, for contacts or companies) and the values they allow.

A definition fixes a key, a label and a type. Values given for that key on a contact or company
are checked against the type and stored in one canonical form, whatever form they came in
(JSON from the API or text from a CSV cell): numbers as JSON numbers, dates as `YYYY-MM-DD`,
booleans as true/false, selects as the option's own spelling.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from talkturo.domain.common import Name, Resource

Entity = Literal["contact", "company"]
FieldType = Literal["text", "number", "date", "boolean", "select"]

KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_TEXT = 2000
MAX_OPTIONS = 100
# Definitions are a schema, not data: a bound keeps every validation one small query.
MAX_DEFINITIONS_PER_ENTITY = 200

_TRUE = frozenset({"true", "yes", "y", "1", "on"})
_FALSE = frozenset({"false", "no", "n", "0", "off"})


def check_options(options: list[str] | None) -> list[str] | None:
    if options is None:
        return None
    cleaned = [" ".join(option.split()) for option in options]
    if not cleaned:
        raise ValueError("a select field needs at least one option")
    if any(not option for option in cleaned):
        raise ValueError("options must not be empty")
    if len(cleaned) > MAX_OPTIONS:
        raise ValueError(f"at most {MAX_OPTIONS} options")
    if any(len(option) > 200 for option in cleaned):
        raise ValueError("an option is at most 200 characters")
    folded = [option.casefold() for option in cleaned]
    if len(set(folded)) != len(folded):
        raise ValueError("options must be unique (ignoring case)")
    return cleaned


class CustomFieldCreate(Resource):
    entity: Entity
    key: str = Field(
        min_length=1,
        max_length=64,
        description="snake_case identifier, unique per entity; used in `custom.<key>`.",
    )
    label: Name = Field(min_length=1, max_length=200)
    type: FieldType
    options: list[str] | None = Field(
        default=None,
        validate_default=True,
        description="The allowed values of a `select` field (required for it).",
    )

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not KEY_PATTERN.match(value):
            raise ValueError(
                "must be snake_case: a lowercase letter, then lowercase letters, digits or _"
            )
        return value

    @field_validator("options")
    @classmethod
    def _options(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        kind = info.data.get("type")
        if kind == "select" and value is None:
            raise ValueError("a select field needs its options")
        if kind is not None and kind != "select" and value is not None:
            raise ValueError("only select fields have options")
        return check_options(value)


class CustomFieldUpdate(Resource):
    """Only the label and a select's options change; a type is fixed once data depends on it."""

    label: Name | None = Field(default=None, min_length=1, max_length=200)
    options: list[str] | None = None
    type: FieldType | None = Field(
        default=None, description="Accepted only when unchanged: a field's type is fixed."
    )

    @field_validator("options")
    @classmethod
    def _options(cls, value: list[str] | None) -> list[str] | None:
        return check_options(value)

    @field_validator("label", "options", "type")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null")
        return value


class CustomField(BaseModel):
    object: Literal["custom_field"] = "custom_field"
    id: str
    entity: Entity
    key: str
    label: str
    type: FieldType
    options: list[str] | None = None
    created_at: datetime
    updated_at: datetime


class CustomValueError(ValueError):
    """A custom value breaks its definition; `key` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message

    @property
    def param(self) -> str:
        return f"custom.{self.key}"


def coerce_value(field: CustomField, value: Any) -> Any:
    """`value` in the canonical form of `field`'s type, or ValueError saying what is expected."""
    if field.type == "text":
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError("must be text")
        text = str(value).strip()
        if len(text) > MAX_TEXT:
            raise ValueError(f"must be at most {MAX_TEXT} characters")
        return text
    if field.type == "number":
        return _number(value)
    if field.type == "date":
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip()).isoformat()
            except ValueError:
                pass
        raise ValueError("must be a date as YYYY-MM-DD")
    if field.type == "boolean":
        if isinstance(value, bool):
            return value
        word = str(value).strip().casefold() if isinstance(value, str | int) else None
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError("must be true or false (or yes/no, 1/0)")
    # select: the option's own spelling, matched regardless of case and spacing.
    if isinstance(value, str):
        wanted = " ".join(value.split()).casefold()
        for option in field.options or []:
            if option.casefold() == wanted:
                return option
    raise ValueError(f"must be one of: {', '.join(field.options or [])}")


def _number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise ValueError("must be a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value.strip().replace(",", "")) if value.strip() else math.nan
        except ValueError:
            raise ValueError("must be a number") from None
    else:
        raise ValueError("must be a number")
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


def validate_custom(
    definitions: Iterable[CustomField], values: Mapping[str, Any]
) -> dict[str, Any]:
    """The given values, canonical; None or blank text becomes None ("remove this value").

    Removing is allowed for any key, defined or not, so that values left behind by a deleted
    definition can be cleared. Raises CustomValueError for a value given for a key without a
    definition, or a value its type refuses.
    """
    by_key = {field.key: field for field in definitions}
    cleaned: dict[str, Any] = {}
    for key, value in values.items():
        if value is None or (isinstance(value, str) and not value.strip()):
            cleaned[key] = None
            continue
        field = by_key.get(key)
        if field is None:
            raise CustomValueError(
                key, f"custom.{key}: no custom field with this key; create it first"
            )
        try:
            cleaned[key] = coerce_value(field, value)
        except ValueError as error:
            raise CustomValueError(key, f"custom.{key}: {error}") from None
    return cleaned


def merge_custom(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """`current` with `changes` applied: a None change removes the key."""
    merged = dict(current)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged
