"""Cursor pagination over DynamoDB queries.

The cursor is the last returned item's key, base64url-encoded. It is only ever used as the
ExclusiveStartKey of a query whose partition is fixed by the caller's own account, and its
partition is checked against that, so a cursor can never reach another tenant's items.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any, TypeVar

from pynamodb.expressions.condition import Condition

from talkturo.errors import InvalidRequest
from talkturo.store.table import Item, connection

M = TypeVar("M", bound=Item)
T = TypeVar("T")

_INDEX_KEYS = {
    None: ("PK", "SK"),
    "GSI1": ("GSI1PK", "GSI1SK"),
    "GSI2": ("GSI2PK", "GSI2SK"),
    "GSI3": ("GSI3PK", "GSI3SK"),
    "GSI4": ("GSI4PK", "GSI4SK"),
}


def encode_cursor(item: Item, index: str | None) -> str:
    raw = item.serialize()
    names = {"PK", "SK", *_INDEX_KEYS[index]}
    key = {name: raw[name] for name in names if name in raw}
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str, *, partition: str, index: str | None) -> dict[str, Any]:
    hash_name = _INDEX_KEYS[index][0]
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        ok = isinstance(key, dict) and key.get(hash_name) == {"S": partition}
    except (ValueError, binascii.Error, UnicodeDecodeError):
        ok = False
    if not ok:
        raise InvalidRequest(
            "starting_after is not a cursor returned by this list", param="starting_after"
        )
    return dict(key)


def query_page(
    model: type[M],
    partition: str,
    *,
    convert: Callable[[M], T],
    limit: int,
    starting_after: str | None = None,
    range_key_condition: Condition | None = None,
    filter_condition: Condition | None = None,
    index: str | None = None,
    newest_first: bool = True,
) -> tuple[list[T], str | None]:
    """One page of a query, plus the cursor for the next one (None when nothing is left)."""
    connection()
    start = None
    if starting_after:
        start = decode_cursor(starting_after, partition=partition, index=index)
    source: Any = getattr(model, index.lower()) if index else model
    # One item beyond the page tells whether more exist without a second round trip.
    results = source.query(
        partition,
        range_key_condition=range_key_condition,
        filter_condition=filter_condition,
        scan_index_forward=not newest_first,
        last_evaluated_key=start,
        limit=limit + 1,
        page_size=limit + 1 if filter_condition is None else None,
    )
    items = list(results)
    more = len(items) > limit
    items = items[:limit]
    cursor = encode_cursor(items[-1], index) if more and items else None
    return [convert(item) for item in items], cursor
