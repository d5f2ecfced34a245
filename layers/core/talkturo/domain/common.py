"""Types shared by every resource: pages of results, timestamps, credits, names, links."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Generic, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

T = TypeVar("T")

# Credits are kept with four decimal places (a tenth of a hundredth of a minute) and shown as a
# JSON string so that no client rounds them through a float.
CREDIT_PLACES = Decimal("0.0001")


def quantize_credits(value: Decimal | int | str) -> Decimal:
    return Decimal(value).quantize(CREDIT_PLACES, rounding=ROUND_HALF_UP)


Credits = Annotated[Decimal, PlainSerializer(lambda v: f"{v:.4f}", return_type=str)]


def utcnow() -> datetime:
    return datetime.now(UTC)


# Control characters (C0, DEL, C1: NUL, ESC and terminal escapes) and the bidirectional marks,
# embeddings, overrides and isolates that make a name display as something it is not.
_HIDDEN = "\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069"
_HIDDEN_CHARACTER = re.compile(f"[{_HIDDEN}]")


def _plain_text(value: str) -> str:
    found = _HIDDEN_CHARACTER.search(value)
    if found:
        raise ValueError(
            f"must not contain control or text-direction characters (U+{ord(found.group()):04X})"
        )
    return value


# A name a person gives (of a company, contact, assistant, number, key…): shown in consoles and
# exports, so it holds no character that hides, reorders or restyles text.
Name = Annotated[
    str, AfterValidator(_plain_text), Field(json_schema_extra={"pattern": f"^[^{_HIDDEN}]*$"})
]


def _web_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return _plain_text(value)


# A link a console renders: http(s) only, so no `javascript:` or `data:` URL is ever stored.
WebUrl = Annotated[
    str,
    AfterValidator(_web_url),
    Field(json_schema_extra={"format": "uri", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]+"}),
]


def _iso_8601(value: Any) -> Any:
    # Pydantic would read numbers, and strings such as "0.5" or "1e3", as Unix times.
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError("must be an ISO 8601 date-time such as 2026-01-31T09:00:00Z, or a date")


# A date-time filter: ISO 8601 only (a date is its midnight; no offset means UTC).
IsoDateTime = Annotated[datetime, BeforeValidator(_iso_8601)]


class Resource(BaseModel):
    """Base of every API object: forbids unknown fields on input models built from it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Page(BaseModel, Generic[T]):
    """A cursor-paginated list, newest first."""

    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool
    next_cursor: str | None = Field(
        default=None, description="Pass as `starting_after` to get the next page."
    )


class ListParams(BaseModel):
    limit: int = Field(default=20, ge=1, le=100)
    starting_after: str | None = None
