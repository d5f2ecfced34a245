"""Queries in the emulator read one partition, not the whole table.

moto answers every Query, on a table or on an index, by walking (and sorting) every item of the
table, then keeping those of the asked partition: at 86,000 items a query took seconds. Here a
Query hands moto only the candidates of its partition, and moto does the rest exactly as
before (key conditions, sort order, ScanIndexForward, paging, filters, projections, counts):

- a table Query reads `Table.items[hash key]`, which moto already keeps per partition, and
  within it only the range keys its key condition, start key and Limit let it reach (the range
  keys of each partition queried are kept in order for that);
- an index Query reads a lookup of that index (its hash key value -> the items that have it),
  one per index of each table.

The lookups are kept in step inside moto's own write paths: `Table.put_item` and
`Table.delete_item` (which PutItem, DeleteItem, BatchWriteItem, transactions and their rollback
all go through) and the backend's `update_item` (UpdateItem changes an item in place, so the
item is indexed again after it, whatever became of its key attributes). An item without an
index's hash key is in no lookup of that index (a sparse index). A lookup is built, once, from
the table's items the first time its index is queried, and again whenever the table's `items`
mapping is no longer the one it was built from (a table restored or unpickled, say), so state
that enters a table by `put_item` or by replacing the whole mapping is always seen. Writing into
`Table.items` by hand bypasses the lookups: use `put_item`.

The same write paths also note the primary key of every item written, once something has asked
for them (`take_changes`, what a snapshot of local/persistence.py reads), so a snapshot reads
again only what changed since the last one, not the whole table.

Anything the lookups cannot narrow down (a query without its hash key, an index keyed on
several attributes) goes to moto's own whole-table walk unchanged.

The answers of reads (GetItem, Query, Scan, BatchGetItem) are written as plain JSON (by orjson):
moto keeps them in DynamoDB's wire form already, and its generic serializer (which walks the
botocore shapes value by value) cost more than the read itself. Answers holding binary values,
errors and every other action still go through moto's serializer.

Request bodies, of every service that speaks JSON, are read by orjson, which gives what
`json.loads` gives for any body it takes; a body it refuses (not UTF-8, NaN, a lone surrogate)
or that may hold an integer beyond 64 bits (which it would read as a float) is read by moto's
`json.loads`. A batch's repeated keys are looked for in a set, not moto's list (quadratic).

Two writes take a shorter way to moto's own result:

- an item is built checking its size once: moto's item re-adds the sizes of every attribute
  already in it each time it adds one (quadratic in the attributes; what the 400 KB limit
  needs is the final sum, and nothing else is built before the check fails);
- an update that is only `ADD #name :number` to an existing item's number (a counter, such as a
  company's contact count in every contact write) adds it in place, with moto's own condition
  check and arithmetic; moto would parse, validate and run a whole update expression and
  deep-copy the item first. Anything else (another expression, a key attribute, an attribute
  of another type, a missing item, a failing condition, streams) goes through moto's path.

Requests are read without walking their attribute values: moto reads every request by walking
the botocore shapes of its JSON, value by value (for a transaction of 100 items, a tenth of its
time), to turn blobs into bytes and drop nulls; an attribute value that holds neither (no `B`,
`BS`, no null, only DynamoDB's own types) is that walk's answer already, and is taken as it is.

A transaction checks every operation's condition first, against the items as they are (no
two operations of one transaction may touch one item, so that is what each would see in moto's
loop too), then writes, each item once: moto reads every item three times, evaluates each
condition twice and copies each item for its rollback. Anything but every condition holding (a
refusal, a repeated item, an invalid request) goes moto's way from the start, so its errors and
cancellation reasons are its own; a write refused half way is undone, and moto's way answers.
Its string and number key values are built at once (moto's `get_keys_value` for any other).

A string's (or binary's, or boolean's) `cast_value`, through which every key lookup hashes and
compares, is its value: moto asks five questions of its type first.

A transaction's Put (its condition already checked) builds its item in one walk of the values
when they are plain (no binary; nothing moto's checks refuse: a number's text, a null's true,
the key types and sizes, the 400 KB limit): moto checks the item's types in one walk, builds
each value in another, builds the key values again and sizes them apart. Anything else (a
binary, an attribute named like a type, a value moto refuses, a table with a stream) is put
by moto's `put_item`, with its errors.

Requests are read with less walking: an item's attribute map whose values are all taken as
they are, and a map of strings (a request's names), is the map itself; a structure (each
operation of a transaction) is read by a list of its members made once per shape, a string
member taken as it came (moto looks up each member's wire name and its type's reader every
time). The handlers' own checks of a transaction skip moto's empty-key check for an item that
holds no empty string or binary (the only thing it refuses), parse each update expression
once per text only to list the names it uses (the backend still parses it for the update),
and look their backend up once per request instead of once per item.

Condition expressions are parsed once per text, names and values: moto parses each one of a
transaction's items three times (checking the request, checking the condition, writing the
item), which was a fifth of a transaction's time. The parsed condition is shared by the
requests that ask the same thing (it only reads the item it is asked about).
"""

from __future__ import annotations

import copy
import inspect
import json
import re
import threading
import typing
from collections.abc import Callable
from enum import Enum
from typing import Any

import moto.dynamodb.responses as dynamodb_responses
import orjson
from moto.core.parse import BaseJSONParser, JSONParser
from moto.core.responses import ActionResult
from moto.dynamodb.comparisons import ConditionExpressionParser, get_filter_expression
from moto.dynamodb.limits import HASH_KEY_MAX_LENGTH, RANGE_KEY_MAX_LENGTH
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
from moto.dynamodb.models.table import Table
from moto.dynamodb.models.utilities import bytesize
from moto.dynamodb.responses import DynamoHandler, DynamoResult
from sortedcontainers import SortedDict

# Key types DynamoDB allows for a key attribute (anything else cannot be hashed nor match).
_KEY_TYPES = frozenset({"S", "N", "B"})

PrimaryKey = tuple[DynamoType, DynamoType | None]


def _primary_key(item: Item) -> PrimaryKey:
    return item.hash_key, item.range_key


class _IndexLookup:
    """One index's hash key value -> {primary key: item}, for the items that have that key."""

    def __init__(self, attribute: str) -> None:
        self.attribute = attribute
        self._buckets: dict[DynamoType, dict[PrimaryKey, Item]] = {}
        self._value_of: dict[PrimaryKey, DynamoType] = {}

    def add(self, item: Item) -> None:
        key = _primary_key(item)
        self.discard(key)
        value = item.attrs.get(self.attribute)
        if value is None or value.type not in _KEY_TYPES:
            return
        self._buckets.setdefault(value, {})[key] = item
        self._value_of[key] = value

    def discard(self, key: PrimaryKey) -> None:
        value = self._value_of.pop(key, None)
        if value is None:
            return
        bucket = self._buckets[value]
        del bucket[key]
        if not bucket:
            del self._buckets[value]

    def items_with(self, value: DynamoType) -> list[Item]:
        if value.type not in _KEY_TYPES:
            return []
        return list(self._buckets.get(value, {}).values())


class _TableLookups:
    """The lookups of one table's indexes, for the `items` mapping they were built from."""

    def __init__(self, items: Any) -> None:
        self.items = items
        self.by_index: dict[str, _IndexLookup] = {}
        # Range keys of the partitions queried so far, in order: hash key -> {cast range: range}.
        self.ordered: dict[DynamoType, SortedDict] = {}


_ATTRIBUTE = "_talkturo_index_lookups"


def _lookups(table: Table) -> _TableLookups:
    state: _TableLookups | None = table.__dict__.get(_ATTRIBUTE)
    if state is None or state.items is not table.items:
        state = _TableLookups(table.items)
        setattr(table, _ATTRIBUTE, state)
    return state


class _Changes:
    """The primary keys of the items written since a snapshot last took them."""

    def __init__(self, items: Any) -> None:
        self.items = items
        self.keys: set[PrimaryKey] = set()


_CHANGES = "_talkturo_changed_keys"


def _note_change(table: Table, key: PrimaryKey) -> None:
    changes: _Changes | None = table.__dict__.get(_CHANGES)
    if changes is not None:
        changes.keys.add(key)


def take_changes(table: Table) -> set[PrimaryKey] | None:
    """The keys of the items put, updated or deleted since the last call; None when everything
    must be read (the first call, or the table's `items` mapping was replaced since).

    Keys are noted only once this has been called for the table: nothing is kept otherwise.
    """
    changes: _Changes | None = table.__dict__.get(_CHANGES)
    if changes is None or changes.items is not table.items:
        setattr(table, _CHANGES, _Changes(table.items))
        return None
    taken, changes.keys = changes.keys, set()
    return taken


def _index_hash_attribute(table: Table, index_name: str) -> str | None:
    for index in table.all_indexes():
        if index.name == index_name:
            hashes = [key["AttributeName"] for key in index.schema if key["KeyType"] == "HASH"]
            return hashes[0] if len(hashes) == 1 else None
    return None


def _index_lookup(table: Table, index_name: str) -> _IndexLookup | None:
    attribute = _index_hash_attribute(table, index_name)
    if attribute is None:
        return None
    state = _lookups(table)
    lookup = state.by_index.get(index_name)
    if lookup is None or lookup.attribute != attribute:
        lookup = _IndexLookup(attribute)
        for item in _items_of(table):
            lookup.add(item)
        state.by_index[index_name] = lookup
    return lookup


def _in_partition(table: Table, partition: Any) -> list[Item]:
    """The items of one `Table.items` entry: {range key: item}, or the item itself."""
    if partition is None:
        return []
    return list(partition.values()) if table.range_key_attr else [partition]


def _items_of(table: Table) -> list[Item]:
    return [item for partition in table.items.values() for item in _in_partition(table, partition)]


def _indexed(table: Table) -> list[_IndexLookup]:
    """The lookups already built for `table` (the others are built when first queried)."""
    state: _TableLookups | None = table.__dict__.get(_ATTRIBUTE)
    if state is None or state.items is not table.items:
        return []
    return list(state.by_index.values())


def _ordered_partition(table: Table, hash_key: DynamoType) -> SortedDict:
    """The range keys of one partition in moto's order (built on first use, then kept)."""
    state = _lookups(table)
    ordered = state.ordered.get(hash_key)
    if ordered is None:
        partition = table.items.get(hash_key) or {}
        ordered = SortedDict((key.cast_value, key) for key in partition)
        state.ordered[hash_key] = ordered
    return ordered


def _track_range_key(table: Table, item: Item, present: bool) -> None:
    state: _TableLookups | None = table.__dict__.get(_ATTRIBUTE)
    if state is None or state.items is not table.items or item.range_key is None:
        return
    ordered = state.ordered.get(item.hash_key)
    if ordered is None:
        return
    if present:
        ordered[item.range_key.cast_value] = item.range_key
    else:
        ordered.pop(item.range_key.cast_value, None)


def _range_candidates(table: Table, hash_key: DynamoType, asked: dict[str, Any]) -> list[Item]:
    """The items of a table Query's partition that moto's loop will look at, in order: those
    that meet the range condition, from the start key on, and no more than Limit + 1 of them
    (moto reads one beyond Limit to know there is more). Any of moto's own checks still run."""
    partition = table.items.get(hash_key) or {}
    comparison: str | None = asked.get("range_comparison")
    values: list[DynamoType] = list(asked.get("range_objs") or [])
    forward = asked.get("scan_index_forward") is not False
    limit = asked.get("limit")
    low: Any = None
    high: Any = None
    if comparison:
        if any(value.type != table.range_key_type for value in values) or not values:
            return _in_partition(table, partition)
        casts = [value.cast_value for value in values]
        if comparison in ("=", "EQ", "BETWEEN"):
            low, high = casts[0], casts[-1]
        elif comparison in ("<", "<=", "LT", "LE"):
            high = casts[0]
        elif comparison in (">", ">=", "GT", "GE"):
            low = casts[0]
        elif comparison.upper() == "BEGINS_WITH" and isinstance(casts[0], str):
            low, high = casts[0], casts[0] + "\U0010ffff"
        else:
            return _in_partition(table, partition)
    given = asked.get("exclusive_start_key") or {}
    start = given.get(table.range_key_attr)
    if start is not None:
        start_key = DynamoType(start)
        same_partition = DynamoType(given.get(table.hash_key_attr) or {"NULL": True}) == hash_key
        if start_key.type != table.range_key_type or not same_partition:
            return _in_partition(table, partition)
        if forward:
            low = start_key.cast_value if low is None else max(low, start_key.cast_value)
        else:
            high = start_key.cast_value if high is None else min(high, start_key.cast_value)
    if low is not None and high is not None and low > high:
        return []
    wanted = limit + 1 if isinstance(limit, int) and not asked.get("filter_kwargs") else None
    found: list[Item] = []
    ordered = _ordered_partition(table, hash_key)
    after = start_key.cast_value if start is not None else None
    for cast in ordered.irange(low, high, reverse=not forward):
        if start is not None and cast == after:
            continue  # the start key itself: moto skips it too, so it must not take a place
        item = partition[ordered[cast]]
        if comparison and not item.range_key.compare(comparison, values):
            continue
        found.append(item)
        if wanted is not None and len(found) >= wanted:
            return found
    if isinstance(limit, int) and comparison and found:
        # moto reads the whole partition, and at Limit any item after the last match, even one
        # that fails the range condition, gives a LastEvaluatedKey: hand it the first such item
        # too (it fails the condition, so it is never answered).
        last_key = found[-1].range_key
        assert last_key is not None  # a ranged table's items all carry their range key
        last = last_key.cast_value
        following = next(
            iter(
                ordered.irange(minimum=last, inclusive=(False, True))
                if forward
                else ordered.irange(maximum=last, inclusive=(True, False), reverse=True)
            ),
            None,
        )
        if following is not None:
            found.append(partition[ordered[following]])
    return found


def _reindex(table: Table, hash_value: DynamoType, range_value: DynamoType | None) -> None:
    lookups = _indexed(table)
    if not lookups:
        return
    key: PrimaryKey = (hash_value, range_value)
    current = table.items.get(hash_value)
    if table.range_key_attr and current is not None:
        current = current.get(range_value)
    for lookup in lookups:
        if isinstance(current, Item):
            lookup.add(current)
        else:
            lookup.discard(key)


# The candidates a running Query hands moto's `all_items`, per thread (moto's query reads
# `self.all_items()` once, for the table it answers).
_candidates = threading.local()


def _sorted_like_moto(items: list[Item]) -> list[Item]:
    # The order `Table.all_items` gives, which moto's query relies on for ties.
    return sorted(
        items, key=lambda item: (item.hash_key, item.range_key) if item.range_key else item.hash_key
    )


def _query_partition(original: Callable[..., Any]) -> Callable[..., Any]:
    # moto's backend passes most of the arguments by position.
    signature = inspect.signature(original)

    def query(table: Table, *args: Any, **kwargs: Any) -> Any:
        asked = signature.bind(table, *args, **kwargs).arguments
        hash_key: DynamoType | None = asked.get("hash_key")
        index_name: str | None = asked.get("index_name")
        candidates: list[Item] | None = None
        if index_name:
            lookup = _index_lookup(table, index_name)
            wanted = [
                value
                for name, value in asked.get("hash_key_conditions") or ()
                if lookup is not None and name == lookup.attribute
            ]
            if lookup is not None and len(wanted) == 1:
                candidates = lookup.items_with(wanted[0])
        elif hash_key is not None and hash_key.type not in _KEY_TYPES:
            candidates = []
        elif hash_key is not None and table.range_key_attr:
            candidates = _range_candidates(table, hash_key, asked)
        elif hash_key is not None:
            candidates = _in_partition(table, table.items.get(hash_key))
        if candidates is None:
            return original(table, *args, **kwargs)
        _candidates.table, _candidates.items = table, _sorted_like_moto(candidates)
        try:
            return original(table, *args, **kwargs)
        finally:
            _candidates.table = _candidates.items = None

    return query


def _all_items_or_candidates(original: Callable[..., Any]) -> Callable[..., Any]:
    def all_items(table: Table) -> list[Item]:
        if getattr(_candidates, "table", None) is table:
            items: list[Item] = _candidates.items
            return items
        result: list[Item] = original(table)
        return result

    return all_items


def _put_indexes_too(original: Callable[..., Any]) -> Callable[..., Any]:
    def put_item(table: Table, *args: Any, **kwargs: Any) -> Any:
        item = original(table, *args, **kwargs)
        _indexed_after_put(table, item)
        return item

    return put_item


def _delete_unindexes_too(original: Callable[..., Any]) -> Callable[..., Any]:
    def delete_item(table: Table, hash_key: DynamoType, range_key: DynamoType | None) -> Any:
        item = original(table, hash_key, range_key)
        if item is not None:
            for lookup in _indexed(table):
                lookup.discard(_primary_key(item))
            _track_range_key(table, item, present=False)
            _note_change(table, _primary_key(item))
        return item

    return delete_item


def _update_reindexes(original: Callable[..., Any]) -> Callable[..., Any]:
    def update_item(backend: DynamoDBBackend, table_name: str, key: Any, *a: Any, **kw: Any) -> Any:
        try:
            return original(backend, table_name, key, *a, **kw)
        finally:
            # Also after a failure: the item may have been created or changed part way.
            table = backend.tables.get(table_name)
            if table is not None and isinstance(key, dict) and table.hash_key_attr in key:
                range_value = None
                if table.range_key_attr:
                    if table.range_key_attr in key:
                        range_value = DynamoType(key[table.range_key_attr])
                    else:
                        table = None
                if table is not None:
                    hash_value = DynamoType(key[table.hash_key_attr])
                    _reindex(table, hash_value, range_value)
                    _note_change(table, (hash_value, range_value))

    return update_item


# Reads whose answers are already in DynamoDB's JSON wire form inside moto (attribute values
# as {"S": …}); moto's generic serializer walks them shape by shape, attribute by attribute:
# tens of milliseconds for a page of items. Plain JSON is the same answer.
_PLAIN_READS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem"})
# moto answers its reads as a DynamoResult (values already turned into plain dictionaries).
_PLAIN_RESULTS = (ActionResult, DynamoResult)
# Binary values are base64-encoded by the serializer: those answers go through it.
_ENCODED_TYPES = frozenset({"B", "BS"})


def _is_plain(value: Any) -> bool:
    if isinstance(value, dict):
        return all(
            isinstance(key, str) and key not in _ENCODED_TYPES and _is_plain(inner)
            for key, inner in value.items()
        )
    if isinstance(value, list):
        return all(_is_plain(inner) for inner in value)
    return isinstance(value, str | int | float) and not isinstance(value, Enum)


def _plain_json_reads(original: Callable[..., Any]) -> Callable[..., Any]:
    def serialized(handler: DynamoHandler, action_result: Any) -> Any:
        result = action_result.result
        if (
            type(action_result) in _PLAIN_RESULTS
            and isinstance(result, dict)
            and handler._get_action() in _PLAIN_READS
            and _is_plain(result)
        ):
            headers = {"Content-Type": _CONTENT_TYPE, **handler.response_headers}
            return 200, headers, _json_text(result)
        return original(handler, action_result)

    return serialized


def _json_text(value: Any) -> bytes | str:
    try:
        return orjson.dumps(value)
    except TypeError:  # what orjson does not write (a lone surrogate, an int beyond 64 bits)
        return json.dumps(value)


# An integer of 19 digits or more may be beyond 64 bits, which orjson would read as a float:
# such a run is looked for with every digit made a 9 (a regular expression takes longer than
# the parse itself).
_DIGITS_AS_NINES = bytes.maketrans(b"0123456789", b"9" * 10)
_LONG_RUN = b"9" * 19


def _has_long_digit_run(body: bytes) -> bool:
    return _LONG_RUN in body.translate(_DIGITS_AS_NINES)


def _bodies_read_by_orjson(original: Callable[..., Any]) -> Callable[..., Any]:
    """A request body read by orjson, which gives what `json.loads` gives for any body it
    takes; anything else (not UTF-8, NaN, a lone surrogate, a long integer) is moto's read."""

    def parse_body_as_json(parser: BaseJSONParser, body_contents: Any) -> Any:
        if isinstance(body_contents, bytes) and not _has_long_digit_run(body_contents):
            try:
                return orjson.loads(body_contents)
            except orjson.JSONDecodeError:
                pass
        return original(parser, body_contents)

    return parse_body_as_json


def _duplicates_by_set(original: Callable[..., Any]) -> Callable[..., Any]:
    """moto looks for a repeated key by scanning a list of those seen (a batch of 100 keys:
    ~5,000 comparisons); here a set of each key's text (dictionaries with their keys sorted,
    which is what their equality compares). Keys orjson cannot write (bytes) are moto's."""

    def contains_duplicates(handler: DynamoHandler, keys: list[Any]) -> bool:
        seen: set[Any] = set()
        try:
            for key in keys:
                text = key if isinstance(key, str) else orjson.dumps(key, option=_SORTED)
                if text in seen:
                    return True
                seen.add(text)
        except TypeError:
            return bool(original(handler, keys))
        return False

    return contains_duplicates


_SORTED = orjson.OPT_SORT_KEYS


_CONTENT_TYPE = "application/x-amz-json-1.0"

# The types of an attribute value that moto's request parser gives back as they came (`B` and
# `BS` it decodes from base64).
_AS_THEY_COME = frozenset({"S", "N", "SS", "NS", "M", "L", "NULL", "BOOL"})


def _taken_as_it_is(value: Any) -> bool:
    """Whether moto's parse of this attribute value (wire JSON) is the value itself."""
    # One type a value: moto's parse would list several in its own order.
    if not isinstance(value, dict) or len(value) != 1:
        return False
    for kind, inner in value.items():
        if kind in ("S", "N"):
            if not isinstance(inner, str):
                return False
        elif kind in ("SS", "NS"):
            if not isinstance(inner, list) or not all(isinstance(one, str) for one in inner):
                return False
        elif kind == "M":
            if not isinstance(inner, dict) or not all(
                isinstance(name, str) and _taken_as_it_is(one) for name, one in inner.items()
            ):
                return False
        elif kind == "L":
            if not isinstance(inner, list) or not all(_taken_as_it_is(one) for one in inner):
                return False
        elif kind in ("NULL", "BOOL"):
            if not isinstance(inner, bool):
                return False
        else:
            return False
    return True


def _attribute_values_as_they_are(original: Callable[..., Any]) -> Callable[..., Any]:
    def parse_structure(parser: BaseJSONParser, shape: Any, value: Any) -> Any:
        if shape.name == "AttributeValue" and _taken_as_it_is(value):
            return value
        return original(parser, shape, value)

    return parse_structure


def _structures_read_by_plan(original: Callable[..., Any]) -> Callable[..., Any]:
    """moto reads a request's structures (a transaction's every operation) member by member,
    looking up each member's wire name and its type's reader each time; here each shape's
    members are listed once, with whether their type has a reader (a string has none: moto
    takes it as it came)."""
    plans: dict[tuple[type, int], tuple[Any, list[tuple[str, str, Any, bool]]]] = {}

    def parse_structure(parser: JSONParser, shape: Any, value: Any) -> Any:
        if shape.name == "AttributeValue" or shape.is_document_type or value is None:
            return original(parser, shape, value)
        key = (type(parser), id(shape))
        known = plans.get(key)
        if known is None or known[0] is not shape:
            members = [
                (
                    name,
                    member.serialization.get("name", name),
                    member,
                    getattr(type(parser), f"_parse_{member.type_name}", None) is None,
                )
                for name, member in shape.members.items()
            ]
            known = plans[key] = (shape, members)  # the shape kept: its id stays its own
        parsed = parser.MAP_TYPE()
        for name, wire_name, member, as_it_came in known[1]:
            raw = value.get(wire_name)
            if raw is not None:
                parsed[name] = raw if as_it_came else parser._parse_shape(member, raw)
        return parsed

    return parse_structure


def _attribute_maps_as_they_are(original: Callable[..., Any]) -> Callable[..., Any]:
    """An item (a map of names to attribute values) whose values are all taken as they are is
    the map itself, and so is a map of strings: moto would still call its parser twice for every
    entry."""

    def parse_map(parser: JSONParser, shape: Any, value: Any) -> Any:
        if shape.key.type_name == "string" and isinstance(value, dict):
            if shape.value.type_name == "string":
                # Names of a request (ExpressionAttributeNames): moto's parse of a string is
                # the value itself.
                return parser.MAP_TYPE(value)
            if shape.value.name == "AttributeValue" and _all_taken_as_they_are(value):
                return parser.MAP_TYPE(value)
        return original(parser, shape, value)

    return parse_map


def _all_taken_as_they_are(attributes: dict[Any, Any]) -> bool:
    for name, value in attributes.items():
        if type(name) is not str:
            return False
        if type(value) is dict and len(value) == 1 and type(value.get("S")) is str:
            continue  # most values: a string, taken as it is
        if not _taken_as_it_is(value):
            return False
    return True


def _empty_keys_only_when_empty(original: Callable[..., Any]) -> Callable[..., Any]:
    """moto's check of a written item's keys lists the table's and its indexes' key attributes
    each time; it refuses only an empty string or binary value, so an item holding none needs
    no lists."""

    def validate(field_updates: Any, table: Any, custom_error_msg: str | None = None) -> None:
        if table and isinstance(field_updates, dict):
            for value in field_updates.values():
                if not isinstance(value, dict) or len(value) != 1:
                    break
                if ("S" in value or "B" in value) and next(iter(value.values())) == "":
                    break
            else:
                return  # no empty value: moto's check would find none
        original(field_updates, table, custom_error_msg)

    return validate


def _update_expressions_parsed_once(original: Any) -> Any:
    """The request handlers parse an update expression only to list the names and values it
    uses (the backend parses it again for the update itself): a text parsed once is read for
    that afterwards (what the handlers read of it, they do not change)."""
    parsed: dict[str, Any] = {}
    lock = threading.Lock()

    class ParsedOnce(original):
        @classmethod
        def make(cls, expression_str: Any) -> Any:
            if not isinstance(expression_str, str):
                return original.make(expression_str)
            with lock:
                known = parsed.get(expression_str)
            if known is None:
                known = original.make(expression_str)  # an error is not kept: moto's each time
                with lock:
                    if len(parsed) >= _PARSED_MAX:
                        parsed.clear()
                    parsed[expression_str] = known
            return known

    return ParsedOnce


# Parsed conditions: (text, names, values) -> (condition, names used, values used).
_PARSED_MAX = 4096


def _parsed_once(original: Callable[..., Any]) -> Callable[..., Any]:
    parsed: dict[tuple[str, Any, str], tuple[Any, list[str], list[str]]] = {}
    lock = threading.Lock()

    def parse(parser: ConditionExpressionParser) -> Any:
        try:
            # moto passes no names as None in one place and {} in another: the same parse.
            names = _names_key(parser.expression_attribute_names)
            values = _canonical(parser.expression_attribute_values)
        except (TypeError, ValueError):
            return original(parser)
        key = (parser.condition_expression or "", names, values)
        with lock:
            known = parsed.get(key)
        if known is None:
            # Parsed from a private copy of the values, so the condition kept refers to no
            # request's own dictionaries. A condition that does not parse is not kept: each
            # request gets moto's own error.
            own_names = dict(names) if isinstance(names, tuple) else json.loads(names)
            own = ConditionExpressionParser(key[0], own_names, json.loads(values))
            condition = original(own)
            known = (condition, own.expr_attr_names_found, own.expr_attr_values_found)
            with lock:
                if len(parsed) >= _PARSED_MAX:
                    parsed.clear()
                parsed[key] = known
        condition, names_found, values_found = known
        parser.expr_attr_names_found.extend(names_found)
        parser.expr_attr_values_found.extend(values_found)
        return condition

    return parse


# What moto's LimitedSizeDict refuses beyond (its ItemSizeTooLarge).
_ITEM_MAX_BYTES = 405_000


def _sized_once(original: Callable[..., Any]) -> Callable[..., Any]:
    def init(item: Item, hash_key: DynamoType, range_key: DynamoType | None, attrs: Any) -> None:
        if not isinstance(attrs, dict):
            original(item, hash_key, range_key, attrs)
            return
        built = LimitedSizeDict()
        size = 0
        for key, value in attrs.items():
            typed = DynamoType(value)
            size += bytesize(key) + typed.size()
            dict.__setitem__(built, key, typed)
        if size > _ITEM_MAX_BYTES:
            original(item, hash_key, range_key, attrs)  # moto's own error, where it raises it
            return
        item.hash_key, item.range_key, item.attrs = hash_key, range_key, built

    return init


_ADD_ONLY = re.compile(r"\s*ADD\s+(#\w+)\s+(:\w+)\s*")
# Off in the equivalence test, which compares this way's results with moto's.
adds_in_place = True


def _adds_in_place(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    def update_item(backend: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
        asked = signature.bind(backend, *args, **kwargs).arguments
        done = _add_in_place(backend, asked) if adds_in_place else None
        return done if done is not None else original(backend, *args, **kwargs)

    return update_item


def _add_in_place(backend: DynamoDBBackend, asked: dict[str, Any]) -> Item | None:
    """The updated item, when the update is a plain ADD of a number (else None: moto's way)."""
    expression = asked.get("update_expression")
    found = _ADD_ONLY.fullmatch(expression) if isinstance(expression, str) else None
    if found is None or asked.get("attribute_updates") or asked.get("expected"):
        return None
    if asked.get("return_values_on_condition_check_failure"):
        return None
    table = backend.tables.get(str(asked.get("table_name")))
    key = asked.get("key")
    names = asked.get("expression_attribute_names") or {}
    values = asked.get("expression_attribute_values") or {}
    if table is None or table.stream_shard is not None or not isinstance(key, dict):
        return None
    key_names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
    if set(key) != set(key_names) or not all(isinstance(key[k], dict) for k in key_names):
        return None
    name, value = names.get(found.group(1)), values.get(found.group(2))
    if not isinstance(name, str) or name in key_names or _is_index_key(table, name):
        return None
    if not (isinstance(value, dict) and list(value) == ["N"] and isinstance(value["N"], str)):
        return None
    hash_value = DynamoType(key[table.hash_key_attr])
    range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
    item = table.get_item(hash_value, range_value)
    if item is None:
        return None
    current = item.attrs.get(name)
    if current is not None and current.type != "N":
        return None
    condition_text = asked.get("condition_expression")
    # Without a condition (a transaction's update: its condition was checked with the others)
    # moto's parse answers a condition that always holds.
    if condition_text and not get_filter_expression(condition_text, names, values).expr(item):
        return None  # moto raises, with what it says
    try:
        total = (current if current is not None else DynamoType({"N": "0"})) + DynamoType(value)
        item.attrs[name] = total
    except Exception:  # noqa: BLE001 - moto's path answers (a bad number, an item too large)
        return None
    return item


# Off in the equivalence test, which compares this way's results with moto's.
transactions_checked_first = True
_OPERATIONS = frozenset({"ConditionCheck", "Put", "Delete", "Update"})


def _checked_first(original: Callable[..., Any]) -> Callable[..., Any]:
    def transact_write_items(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> Any:
        plan = _plan(backend, transact_items) if transactions_checked_first else None
        if plan is None:
            return original(backend, transact_items)
        done: list[tuple[Table, DynamoType, DynamoType | None, Item | None]] = []
        try:
            for operation, table, key, op, before, (hash_value, range_value) in plan:
                if operation == "ConditionCheck":
                    continue
                # Noted before it is written, so a write that fails half way is undone too
                # (an update changes its item in place: what it was is a copy; an ADD of a
                # number replaces one value, so a copy of the attributes' mapping keeps it).
                kept = _copy_before(op, before) if operation == "Update" else before
                done.append((table, hash_value, range_value, kept))
                if operation == "Put":
                    _put(table, op["Item"])
                elif operation == "Delete":
                    backend.delete_item(op["TableName"], key)
                else:
                    backend.update_item(
                        op["TableName"],
                        key,
                        update_expression=op["UpdateExpression"],
                        # None when absent, as moto's own transaction passes them
                        expression_attribute_names=op.get("ExpressionAttributeNames"),  # type: ignore[arg-type]
                        expression_attribute_values=op.get("ExpressionAttributeValues"),  # type: ignore[arg-type]
                    )
        except Exception:  # noqa: BLE001 - undone, then moto's own way answers
            for table, hash_value, range_value, before in reversed(done):
                table.delete_item(hash_value, range_value)
                if before is not None:
                    table.put_item(before.to_json()["Attributes"], overwrite=True)
            return original(backend, transact_items)
        return None

    return transact_write_items


Plan = list[tuple[str, Table, dict[str, Any], dict[str, Any], Item | None, PrimaryKey]]


def _copy_before(op: dict[str, Any], before: Item | None) -> Item | None:
    """What an updated item was, to put back if the transaction fails later on."""
    if before is None:
        return None
    expression = op.get("UpdateExpression")
    if not (isinstance(expression, str) and _ADD_ONLY.fullmatch(expression)):
        return copy.deepcopy(before)
    # Its values are replaced, never changed. (copy.copy of the mapping would set the values
    # one by one through LimitedSizeDict's size check, which sums the whole item each time.)
    attrs = LimitedSizeDict.__new__(LimitedSizeDict)
    dict.update(attrs, before.attrs)
    kept: Item = object.__new__(Item)
    kept.__dict__.update(before.__dict__)
    kept.attrs = attrs
    return kept


def _plan(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> Plan | None:
    """The transaction's operations with the items they find, when every condition holds
    (None for anything else: moto's own way then answers, with its errors and reasons).

    No two operations of a transaction may touch one item, so each condition reads the item
    as it was before the transaction, whether checked before the writes or between them."""
    if len(transact_items) > 100:
        return None
    plan: Plan = []
    targets: set[tuple[str, str]] = set()
    try:
        for entry in transact_items:
            if len(entry) != 1:
                return None
            operation, op = next(iter(entry.items()))
            if operation not in _OPERATIONS or not isinstance(op, dict):
                return None
            table = backend.get_table(op["TableName"])
            if table.stream_shard is not None:
                return None
            if operation == "Put":
                attrs = op["Item"]
                key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = attrs[table.range_key_attr]
            else:
                key = op["Key"]
            target = (str(op["TableName"]), str(dict(sorted(key.items()))))  # as moto tells
            if target in targets:
                return None
            targets.add(target)
            # What backend.get_item reads, the key's values kept for the writes.
            keys = _key_values(backend, table, key)
            current = table.get_item(*keys)
            condition = op.get("ConditionExpression")
            if condition is not None:
                names, values = (
                    op.get("ExpressionAttributeNames"),
                    op.get("ExpressionAttributeValues"),
                )
                if not get_filter_expression(condition, names, values).expr(current):
                    return None
            plan.append((operation, table, key, op, current, keys))
    except Exception:  # noqa: BLE001 - moto's way says what is wrong
        return None
    return plan


# Off in the equivalence test, which compares this way's results with moto's.
puts_built_here = True
# Attribute names moto's type check of an item reads as types, at any depth: such items go
# its way (they are checked in ways the build here does not repeat).
_TYPE_NAMES = frozenset({"N", "S", "NULL"})


def _put(table: Table, attrs: Any) -> None:
    """A transaction's Put, its condition already checked: moto's `put_item(overwrite=True)`,
    its item built in one walk of the values when they are plain (moto's way otherwise, with
    its checks and errors)."""
    item = _plain_item(table, attrs) if puts_built_here else None
    if item is None:
        table.put_item(attrs, overwrite=True)
        return
    if item.range_key is not None:
        table.items[item.hash_key][item.range_key] = item
    else:
        table.items[item.hash_key] = item  # type: ignore[assignment]
    _indexed_after_put(table, item)


def _plain_item(table: Table, attrs: Any) -> Item | None:
    """The item moto's put would store, when every value is plain (no binary, nothing moto's
    checks refuse), the table has no stream and the item fits; else None.

    moto checks an item's types (a number's text, a null's true), its key types and key sizes,
    builds each value (`DynamoType`, recursively), then sizes the whole item: here one walk
    does it all, reading each value once."""
    if type(attrs) is not dict or table.stream_shard is not None:
        return None
    hash_name, range_name = table.hash_key_attr, table.range_key_attr
    if hash_name not in attrs or (range_name is not None and range_name not in attrs):
        return None
    built = LimitedSizeDict()
    # Values too large for a range key (1,024 bytes) are all a key size check can refuse.
    large: dict[str, int] = {}
    total = 0
    for name, value in attrs.items():
        if type(name) is not str or name in _TYPE_NAMES:
            return None
        typed = _typed(table, value)
        if typed is None:
            return None
        dict.__setitem__(built, name, typed[0])
        size = typed[1]
        total += len(name.encode("utf-8")) + size
        if size > RANGE_KEY_MAX_LENGTH:
            large[name] = size
    if total > _ITEM_MAX_BYTES:
        return None
    if large and (
        any(large.get(name, 0) > HASH_KEY_MAX_LENGTH for name in table.hash_key_names)
        or any(large.get(name, 0) > RANGE_KEY_MAX_LENGTH for name in table.range_key_names)
    ):
        return None
    hash_value = _scalar_copy(built[hash_name])
    range_value = _scalar_copy(built[range_name]) if range_name is not None else None
    if hash_value.type != table.hash_key_type:
        return None
    if range_value is not None and range_value.type != table.range_key_type:
        return None
    item = typing.cast(Item, Item.__new__(Item))  # tracked by moto as its own items are
    item.hash_key, item.range_key, item.attrs = hash_value, range_value, built
    return item


def _typed(table: Table, value: Any) -> tuple[DynamoType, int] | None:
    """moto's `DynamoType` of a wire value and its `size()`, or None for a value not plain."""
    if type(value) is not dict or len(value) != 1:
        return None
    ((kind, inner),) = value.items()
    size = 0
    if kind == "S" and type(inner) is str:  # most values: at once
        typed_string: DynamoType = DynamoType.__new__(DynamoType)
        typed_string.type, typed_string.value = kind, inner
        return typed_string, len(inner.encode("utf-8"))
    if kind == "S" or kind == "N":
        if type(inner) is not str:
            return None
        if kind == "N":
            try:
                table._validate_number_type(inner)
            except Exception:  # noqa: BLE001 - refused: moto's way says how
                return None
            size = len(inner)
        else:
            size = len(inner.encode("utf-8"))
    elif kind == "SS" or kind == "NS":
        if type(inner) is not list or not all(type(one) is str for one in inner):
            return None
        size = sum(len(one.encode("utf-8")) if kind == "SS" else len(one) for one in inner)
    elif kind == "BOOL" or kind == "NULL":
        if type(inner) is not bool or (kind == "NULL" and inner is not True):
            return None
        size = 1
    elif kind == "L":
        if type(inner) is not list:
            return None
        members = []
        for one in inner:
            typed = _typed(table, one)
            if typed is None:
                return None
            members.append(typed[0])
            size += typed[1]
        inner = members
    elif kind == "M":
        if type(inner) is not dict:
            return None
        fields = {}
        for name, one in inner.items():
            if type(name) is not str or name in _TYPE_NAMES:
                return None
            typed = _typed(table, one)
            if typed is None:
                return None
            fields[name] = typed[0]
            size += len(name.encode("utf-8")) + typed[1]
        inner = fields
    else:
        return None
    typed_value: DynamoType = DynamoType.__new__(DynamoType)
    typed_value.type, typed_value.value = kind, inner
    return typed_value, size


def _scalar_copy(value: DynamoType) -> DynamoType:
    """A value of its own for an item's key (as moto's `DynamoType(...)` of it would be)."""
    key: DynamoType = DynamoType.__new__(DynamoType)
    key.type, key.value = value.type, value.value
    return key


def _indexed_after_put(table: Table, item: Item) -> None:
    """What `put_item` keeps in step besides the table (see `_put_indexes_too`)."""
    for lookup in _indexed(table):
        lookup.add(item)
    _track_range_key(table, item, present=True)
    _note_change(table, _primary_key(item))


def _key_values(backend: DynamoDBBackend, table: Table, key: Any) -> PrimaryKey:
    """What moto's `get_keys_value` gives, built at once for string and number keys."""
    hash_name, range_name = table.hash_key_attr, table.range_key_attr
    if isinstance(key, dict):
        hash_given = key.get(hash_name)
        range_given = key.get(range_name) if range_name is not None else None
        hash_value = _scalar_key(hash_given)
        range_value = _scalar_key(range_given) if range_name is not None else None
        if hash_value is not None and (range_name is None or range_value is not None):
            return hash_value, range_value
    return backend.get_keys_value(table, key)


def _scalar_key(given: Any) -> DynamoType | None:
    if type(given) is not dict or len(given) != 1:
        return None
    ((kind, inner),) = given.items()
    if (kind != "S" and kind != "N") or type(inner) is not str:
        return None
    value: DynamoType = DynamoType.__new__(DynamoType)
    value.type, value.value = kind, inner
    return value


# Types whose value moto casts to itself (its `cast_value` asks five questions to learn it).
_CAST_AS_THEY_ARE = frozenset({"S", "B", "BOOL"})


class _Property(property):
    """A property that can carry the marks `install` puts on a patch."""


def _strings_cast_at_once(original: Any) -> Any:
    """Every key lookup hashes and compares key values through `cast_value` (strings, almost
    all of them): a string's is the string itself."""
    cast = original.fget

    def cast_value(value: DynamoType) -> Any:
        if value.type in _CAST_AS_THEY_ARE:
            return value.value
        return cast(value)

    return _Property(cast_value)


def _backend_looked_up_once(original: Any) -> Any:
    """A request's handler looks its backend up (account, then region) for every item of a
    transaction it checks: once per handler (one a request) and account and region is enough."""
    look_up = original.fget

    def dynamodb_backend(handler: DynamoHandler) -> Any:
        key = (handler.current_account, handler.region)
        known = handler.__dict__.get(_BACKEND)
        if known is None or known[0] != key:
            known = (key, look_up(handler))
            handler.__dict__[_BACKEND] = known
        return known[1]

    return _Property(dynamodb_backend)


_BACKEND = "_talkturo_backend"


def _is_index_key(table: Table, name: str) -> bool:
    return any(
        key["AttributeName"] == name for index in table.all_indexes() for key in index.schema
    )


def _names_key(mapping: dict[str, Any] | None) -> tuple[tuple[str, str], ...] | str:
    """The same key for the same names: their pairs in order when all are strings (as they
    are), their JSON otherwise (a tuple and a text never meet)."""
    if not mapping:
        return ()
    if isinstance(mapping, dict) and all(
        type(name) is str and type(value) is str for name, value in mapping.items()
    ):
        return tuple(sorted(mapping.items()))
    return _canonical(mapping)


def _canonical(mapping: dict[str, Any] | None) -> str:
    """The same text for the same names or values (most conditions have no values)."""
    return json.dumps(mapping, sort_keys=True) if mapping else "{}"


_PATCHES: list[tuple[Any, str, Callable[[Callable[..., Any]], Callable[..., Any]]]] = [
    (DynamoHandler, "serialized", _plain_json_reads),
    (DynamoHandler, "dynamodb_backend", _backend_looked_up_once),
    (Table, "query", _query_partition),
    (Table, "all_items", _all_items_or_candidates),
    (Table, "put_item", _put_indexes_too),
    (Table, "delete_item", _delete_unindexes_too),
    (DynamoDBBackend, "update_item", _adds_in_place),
    (DynamoDBBackend, "update_item", _update_reindexes),
    (DynamoDBBackend, "transact_write_items", _checked_first),
    (DynamoType, "cast_value", _strings_cast_at_once),
    (Item, "__init__", _sized_once),
    (ConditionExpressionParser, "parse", _parsed_once),
    (BaseJSONParser, "_parse_structure", _attribute_values_as_they_are),
    (JSONParser, "_parse_map", _attribute_maps_as_they_are),
    (JSONParser, "_parse_structure", _structures_read_by_plan),
    (dynamodb_responses, "validate_put_has_empty_keys", _empty_keys_only_when_empty),
    (dynamodb_responses, "UpdateExpressionParser", _update_expressions_parsed_once),
    (BaseJSONParser, "_parse_body_as_json", _bodies_read_by_orjson),
    (DynamoHandler, "_contains_duplicates", _duplicates_by_set),
]


def install() -> None:
    """Patch moto (once per process; a method may take several patches, in the listed order)."""
    for owner, name, wrap in _PATCHES:
        current = getattr(owner, name)
        if wrap in _wraps_of(current):
            continue
        patched = wrap(current)
        patched._talkturo_wrap = wrap  # type: ignore[attr-defined]
        patched._talkturo_original = current  # type: ignore[attr-defined]
        setattr(owner, name, patched)


def _wraps_of(method: Any) -> list[Any]:
    found = []
    while hasattr(method, "_talkturo_original"):
        found.append(getattr(method, "_talkturo_wrap", None))
        method = method._talkturo_original
    return found


def unpatched(method: Any) -> Any:
    """moto's own version of a method patched here (what the equivalence test compares with)."""
    return getattr(method, "_talkturo_original", method)
