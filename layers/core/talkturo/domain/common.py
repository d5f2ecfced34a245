"""Types shared by every resource: pages of results, timestamps, credits."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

T = TypeVar("T")

# Credits are kept with four decimal places (a tenth of a hundredth of a minute) and shown as a
# JSON string so that no client rounds them through a float.
CREDIT_PLACES = Decimal("0.0001")


def quantize_credits(value: Decimal | int | str) -> Decimal:
    return Decimal(value).quantize(CREDIT_PLACES, rounding=ROUND_HALF_UP)


Credits = Annotated[Decimal, PlainSerializer(lambda v: f"{v:.4f}", return_type=str)]


def utcnow() -> datetime:
    return datetime.now(UTC)


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
