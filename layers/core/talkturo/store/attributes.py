"""Attribute types pynamodb lacks."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pynamodb.attributes import Attribute
from pynamodb.constants import NUMBER


class DecimalAttribute(Attribute[Decimal]):
    """A DynamoDB number kept exact (pynamodb's NumberAttribute goes through float)."""

    attr_type = NUMBER

    def serialize(self, value: Any) -> str:
        return str(Decimal(value))

    def deserialize(self, value: Any) -> Decimal:
        return Decimal(value)
