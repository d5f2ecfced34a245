"""The emulator's partition reads answer every Query exactly as moto's whole-table walk does.

Random writes (puts, updates that move or drop index keys, deletes, batch writes, transactions
that commit or roll back) go through the emulator; then random queries, on the tables and on
their indexes, are answered twice: by the emulator as it runs, and by moto's own `Table.query`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler

from talkturo.local.emulator import Emulator
from talkturo.local.emulator_dynamodb import unpatched

pytestmark = pytest.mark.integration

_tables = itertools.count(1)

PKS = ["a", "b", "c"]
RANGE_NUMBERS = ["-1", "2", "9", "10", "10.5", "100"]
STRINGS = ["", "x", "xa", "xb", "y", "10", "9"]


def _create_tables(dynamodb: Any) -> tuple[str, str]:
    number = next(_tables)
    ranged, hashed = f"eq-ranged-{number}", f"eq-hashed-{number}"
    dynamodb.create_table(
        TableName=ranged,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "PK", "AttributeType": "S"},
            {"AttributeName": "SK", "AttributeType": "N"},
            {"AttributeName": "G", "AttributeType": "S"},
            {"AttributeName": "GR", "AttributeType": "N"},
            {"AttributeName": "H", "AttributeType": "N"},
            {"AttributeName": "L", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "PK", "KeyType": "HASH"},
            {"AttributeName": "SK", "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-g",
                "KeySchema": [
                    {"AttributeName": "G", "KeyType": "HASH"},
                    {"AttributeName": "GR", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["V"]},
            },
            {
                "IndexName": "by-h",
                "KeySchema": [{"AttributeName": "H", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            },
        ],
        LocalSecondaryIndexes=[
            {
                "IndexName": "by-l",
                "KeySchema": [
                    {"AttributeName": "PK", "KeyType": "HASH"},
                    {"AttributeName": "L", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    )
    dynamodb.create_table(
        TableName=hashed,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "PK", "AttributeType": "S"},
            {"AttributeName": "G", "AttributeType": "S"},
            {"AttributeName": "GR", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-g",
                "KeySchema": [
                    {"AttributeName": "G", "KeyType": "HASH"},
                    {"AttributeName": "GR", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    return ranged, hashed


# Writes, as (kind, which table: 0 ranged / 1 hashed, primary key, attributes).
_attributes = st.fixed_dictionaries(
    {},
    optional={
        "G": st.sampled_from(PKS).map(lambda v: {"S": v}),
        "GR": st.sampled_from(RANGE_NUMBERS).map(lambda v: {"N": v}),
        "H": st.sampled_from(RANGE_NUMBERS[:3]).map(lambda v: {"N": v}),
        "L": st.sampled_from(STRINGS[1:]).map(lambda v: {"S": v}),
        "V": st.sampled_from(STRINGS).map(lambda v: {"S": v}),
    },
)
_primary = st.tuples(st.sampled_from(PKS), st.sampled_from(RANGE_NUMBERS))
_write = st.tuples(
    st.sampled_from(["put", "update", "remove", "delete", "batch", "transact", "rollback"]),
    st.integers(0, 1),
    _primary,
    _attributes,
)

_query = st.fixed_dictionaries(
    {
        "table": st.integers(0, 1),
        "index": st.sampled_from([None, "by-g", "by-h", "by-l"]),
        "hash": st.sampled_from([*PKS, "2", "-1", "9"]),
        "range": st.one_of(
            st.none(),
            st.tuples(
                st.sampled_from(["=", "<", "<=", ">", ">=", "BETWEEN", "begins_with"]),
                st.sampled_from(RANGE_NUMBERS + STRINGS[1:]),
                st.sampled_from(RANGE_NUMBERS + STRINGS[1:]),
            ),
        ),
        "forward": st.booleans(),
        "limit": st.one_of(st.none(), st.integers(1, 4)),
        "filter": st.booleans(),
        "projection": st.booleans(),
        "count": st.booleans(),
    }
)


def _key(table: int, primary: tuple[str, str]) -> dict[str, Any]:
    key: dict[str, Any] = {"PK": {"S": primary[0]}}
    if table == 0:
        key["SK"] = {"N": primary[1]}
    return key


def _item(table: int, primary: tuple[str, str], attributes: dict[str, Any]) -> dict[str, Any]:
    item = {**_key(table, primary), **attributes}
    if table == 1:
        item.pop("H", None)
        item.pop("L", None)
        if "GR" in item:
            item["GR"] = {"S": item["GR"]["N"]}
    return item


def _update(name: str, table: int, primary: tuple[str, str], attrs: dict[str, Any]) -> Any:
    item = _item(table, primary, attrs)
    sets = [name_ for name_ in ("G", "GR", "H", "L", "V") if name_ in item]
    expression = "SET " + ", ".join(f"{n} = :{n}" for n in sets) if sets else "REMOVE G, GR"
    update: dict[str, Any] = {
        "TableName": name,
        "Key": _key(table, primary),
        "UpdateExpression": expression,
    }
    if sets:
        update["ExpressionAttributeValues"] = {f":{n}": item[n] for n in sets}
    return update


def _apply(dynamodb: Any, names: tuple[str, str], write: Any) -> None:
    kind, table, primary, attrs = write
    name = names[table]
    if kind == "put":
        dynamodb.put_item(TableName=name, Item=_item(table, primary, attrs))
    elif kind == "update":
        dynamodb.update_item(**_update(name, table, primary, attrs))
    elif kind == "remove":
        dynamodb.update_item(
            TableName=name, Key=_key(table, primary), UpdateExpression="REMOVE G, H"
        )
    elif kind == "delete":
        dynamodb.delete_item(TableName=name, Key=_key(table, primary))
    elif kind == "batch":
        other = (primary[0], "100" if primary[1] != "100" else "-1")
        dynamodb.batch_write_item(
            RequestItems={
                name: [
                    {"PutRequest": {"Item": _item(table, primary, attrs)}},
                    {"DeleteRequest": {"Key": _key(table, other)}},
                ]
            }
        )
    else:
        other = ("c" if primary[0] != "c" else "a", primary[1])
        items: list[dict[str, Any]] = [
            {"Put": {"TableName": name, "Item": _item(table, primary, attrs)}},
            {"Update": _update(name, table, other, {"G": {"S": "b"}, "GR": {"N": "9"}})},
        ]
        if kind == "rollback":
            items.append(
                {
                    "ConditionCheck": {
                        "TableName": name,
                        "Key": _key(table, ("absent", "0")),
                        "ConditionExpression": "attribute_exists(PK)",
                    }
                }
            )
        try:
            dynamodb.transact_write_items(TransactItems=items)
        except ClientError as refused:
            assert kind == "rollback", refused


def _request(names: tuple[str, str], query: dict[str, Any]) -> dict[str, Any] | None:
    table, index = query["table"], query["index"]
    if table == 1 and index in ("by-h", "by-l"):
        index = None
    hash_name = {None: "PK", "by-g": "G", "by-h": "H", "by-l": "PK"}[index]
    range_name = {None: "SK" if table == 0 else None, "by-g": "GR", "by-h": None, "by-l": "L"}[
        index
    ]
    range_type = {"SK": "N", "GR": "N" if table == 0 else "S", "L": "S", None: None}[range_name]
    hash_value = {"H": {"N": "2"}}.get(hash_name, {"S": query["hash"]})
    if hash_name == "H" and query["hash"] in ("-1", "9"):
        hash_value = {"N": query["hash"]}
    condition = "#h = :h"
    names_: dict[str, str] = {"#h": hash_name}
    values: dict[str, Any] = {":h": hash_value}
    if query["range"] and range_name:
        operator, low, high = query["range"]

        def typed(value: str) -> dict[str, str]:
            return {range_type or "S": value}

        if range_type == "N" and not all(
            v.lstrip("-").replace(".", "").isdigit() for v in (low, high)
        ):
            return None
        if operator == "begins_with" and range_type == "N":
            return None
        names_["#r"] = range_name
        values[":lo"] = typed(low)
        if operator == "BETWEEN":
            if range_type == "N":
                low, high = sorted((low, high), key=float)
            else:
                low, high = sorted((low, high))
            values[":lo"], values[":hi"] = typed(low), typed(high)
            condition += " AND #r BETWEEN :lo AND :hi"
        elif operator == "begins_with":
            if not low:
                return None
            condition += " AND begins_with(#r, :lo)"
        else:
            condition += f" AND #r {operator} :lo"
    request: dict[str, Any] = {
        "TableName": names[table],
        "KeyConditionExpression": condition,
        "ExpressionAttributeNames": names_,
        "ExpressionAttributeValues": values,
        "ScanIndexForward": query["forward"],
    }
    if index:
        request["IndexName"] = index
    if query["limit"]:
        request["Limit"] = query["limit"]
    if query["filter"]:
        request["FilterExpression"] = "attribute_exists(V)"
    if query["count"]:
        request["Select"] = "COUNT"
    elif query["projection"]:
        request["ProjectionExpression"] = "PK, V"
    return request


def _pages(dynamodb: Any, request: dict[str, Any]) -> list[dict[str, Any]]:
    pages = []
    while True:
        page = dynamodb.query(**request)
        page.pop("ResponseMetadata", None)
        pages.append(page)
        if "LastEvaluatedKey" not in page or len(pages) > 30:
            return pages
        request = {**request, "ExclusiveStartKey": page["LastEvaluatedKey"]}


def _answers_alike(monkeypatch: pytest.MonkeyPatch, call: Callable[[], Any]) -> None:
    """`call` answers the same with the emulator's patches and with moto's own code."""

    def answer() -> Any:
        try:
            found = call()
        except ClientError as refused:
            return {"error": refused.response["Error"]["Code"]}
        if isinstance(found, dict):
            found.pop("ResponseMetadata", None)
        return found

    patched = answer()
    with monkeypatch.context() as moto_only:
        moto_only.setattr(Table, "query", unpatched(Table.query))
        moto_only.setattr(DynamoHandler, "serialized", unpatched(DynamoHandler.serialized))
        walked = answer()
    assert patched == walked


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(writes=st.lists(_write, max_size=25), queries=st.lists(_query, min_size=1, max_size=8))
def test_a_partition_read_answers_as_the_whole_table_walk(
    emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    writes: list[Any],
    queries: list[dict[str, Any]],
) -> None:
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    names = _create_tables(dynamodb)
    # An index queried before the writes is kept in step by them; one queried after is built.
    dynamodb.query(
        TableName=names[0],
        IndexName="by-g",
        KeyConditionExpression="G = :g",
        ExpressionAttributeValues={":g": {"S": "a"}},
    )
    # Full partitions to begin with, so that limits, pages and key ranges have items to cut.
    for n, (pk, sk) in enumerate(itertools.product(PKS, RANGE_NUMBERS)):
        seed = {
            "G": {"S": PKS[n % 2]},
            "GR": {"N": sk},
            "H": {"N": "2"},
            "L": {"S": STRINGS[1 + n % 6]},
        }
        dynamodb.put_item(TableName=names[0], Item=_item(0, (pk, sk), seed))
        # The hashed table's partitions hold one item: spread them over its index instead.
        dynamodb.put_item(TableName=names[1], Item=_item(1, (f"{pk}{sk}", sk), seed))
    for write in writes:
        _apply(dynamodb, names, write)
    for query in queries:
        request = _request(names, query)
        if request is not None:
            _answers_alike(monkeypatch, lambda request=request: _pages(dynamodb, request))
    keys = [_key(0, (pk, sk)) for pk in PKS for sk in RANGE_NUMBERS[:2]]
    _answers_alike(monkeypatch, lambda: dynamodb.get_item(TableName=names[0], Key=keys[0]))
    _answers_alike(
        monkeypatch,
        lambda: dynamodb.batch_get_item(RequestItems={names[0]: {"Keys": keys}}),
    )
    _answers_alike(monkeypatch, lambda: dynamodb.scan(TableName=names[1], Limit=3))
    for name in names:
        dynamodb.delete_table(TableName=name)


def test_a_query_reads_its_partition_only(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    ranged, _hashed = _create_tables(dynamodb)
    for n in range(30):
        dynamodb.put_item(
            TableName=ranged,
            Item={
                "PK": {"S": f"p{n}"},
                "SK": {"N": "1"},
                "G": {"S": f"g{n % 3}"},
                "GR": {"N": "1"},
            },
        )
    read: list[int] = []
    walk = Table.all_items

    def counted(table: Table) -> list[Any]:
        items: list[Any] = walk(table)
        read.append(len(items))
        return items

    monkeypatch.setattr(Table, "all_items", counted)

    def query(**extra: Any) -> int:
        answer = dynamodb.query(TableName=ranged, Select="COUNT", **extra)
        return int(answer["Count"])

    assert (
        query(KeyConditionExpression="PK = :p", ExpressionAttributeValues={":p": {"S": "p7"}}) == 1
    )
    assert (
        query(
            IndexName="by-g",
            KeyConditionExpression="G = :g",
            ExpressionAttributeValues={":g": {"S": "g1"}},
        )
        == 10
    )
    assert read == [1, 10]


# Attribute values as a client may send them: every type, binary ones, nulls where a value
# should be, several types in one, values of the wrong JSON type.
_scalars = st.sampled_from(
    [
        {"S": "x"},
        {"S": ""},
        {"N": "10.5"},
        {"B": "eA=="},
        {"BS": ["eA==", "eQ=="]},
        {"SS": ["a", "b"]},
        {"NS": ["1", "2"]},
        {"NULL": True},
        {"BOOL": False},
        {"S": None},
        {"S": 5},
        {"SS": ["a", 1]},
        {"S": "x", "N": "1"},
        {"N": "1", "S": "x"},
        {"Q": "unknown"},
        {},
        "plain",
    ]
)
_attribute_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.builds(lambda value: {"M": value}, st.dictionaries(st.sampled_from("abc"), inner)),
        st.builds(lambda value: {"L": value}, st.lists(inner, max_size=3)),
    ),
    max_leaves=8,
)


@given(
    item=st.dictionaries(st.sampled_from(["PK", "SK", "a", "b"]), _attribute_values, max_size=4),
    values=st.dictionaries(st.sampled_from([":v", ":w"]), _attribute_values, max_size=2),
)
def test_a_request_is_read_as_moto_reads_it(item: dict[str, Any], values: dict[str, Any]) -> None:
    # Given any request holding attribute values (a transaction's put and update, here)
    import json

    from moto.core.parse import PROTOCOL_PARSERS, BaseJSONParser, JSONParser
    from moto.core.responses import get_service_model

    from talkturo.local import emulator_dynamodb

    emulator_dynamodb.install()
    body = {
        "TransactItems": [
            {"Put": {"TableName": "t", "Item": item, "ExpressionAttributeValues": values}},
            {"Update": {"TableName": "t", "Key": item, "UpdateExpression": "SET a = :v"}},
        ]
    }
    operation = get_service_model("dynamodb").operation_model("TransactWriteItems")

    def parsed() -> Any:
        parser = PROTOCOL_PARSERS["json"](operation, map_type=dict)
        try:
            return read(parser)
        except Exception as error:  # moto's own failure is part of its answer
            return type(error).__name__

    def read(parser: Any) -> Any:
        return parser.parse(
            {
                "method": "POST",
                "values": {},
                "headers": {},
                "body": json.dumps(body).encode(),
                "url_path": "/",
                "url_params": {},
            }
        )

    # When read by the emulator and by moto's own parser, then the two read the same
    as_read = parsed()
    patched, planned = BaseJSONParser._parse_structure, JSONParser._parse_structure
    try:
        BaseJSONParser._parse_structure = unpatched(patched)  # type: ignore[method-assign]
        JSONParser._parse_structure = unpatched(patched)  # type: ignore[method-assign]
        by_moto = parsed()
    finally:
        BaseJSONParser._parse_structure = patched  # type: ignore[method-assign]
        JSONParser._parse_structure = planned  # type: ignore[method-assign]
    # (the same types and the same order of keys too: moto reads a value's first type)
    assert repr(as_read) == repr(by_moto)


_counts = st.sampled_from([None, {"N": "3"}, {"N": "-2.5"}, {"S": "3"}, {"SS": ["a"]}])
_adds = st.fixed_dictionaries(
    {
        "expression": st.sampled_from(["ADD #c :v", " ADD  #c :v ", "ADD #k :v", "SET #c = :v"]),
        "name": st.sampled_from(["C", "G", "PK"]),
        "value": st.sampled_from(
            [{"N": "1"}, {"N": "-1"}, {"N": "0.25"}, {"N": "+7"}, {"N": "x"}, {"S": "1"}]
        ),
        "condition": st.sampled_from(
            [None, "attribute_exists (#k)", "attribute_not_exists (#k)", "#c < :v"]
        ),
        "exists": st.booleans(),
        "count": _counts,
        "transaction": st.booleans(),
    }
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(add=_adds, size=st.integers(min_value=404_800, max_value=405_100))
def test_adds_in_place_and_items_sized_once_answer_as_moto(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, add: dict[str, Any], size: int
) -> None:
    from moto.dynamodb.models.dynamo_type import Item

    from talkturo.local import emulator_dynamodb

    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    ranged, hashed = _create_tables(dynamodb)
    key = {"PK": {"S": "a"}, "SK": {"N": "1"}}
    start = {**key, "G": {"S": "g"}, "GR": {"N": "1"}}
    if add["count"] is not None:
        start["C"] = add["count"]
    names = {"#c": add["name"]} if "#c" in add["expression"] else {}
    if "#k" in add["expression"] or "#k" in (add["condition"] or ""):
        names["#k"] = "PK"
    if "#c" in (add["condition"] or ""):
        names["#c"] = add["name"]
    request: dict[str, Any] = {
        "TableName": ranged,
        "Key": key,
        "UpdateExpression": add["expression"],
        "ExpressionAttributeValues": {":v": add["value"]},
    }
    if names:
        request["ExpressionAttributeNames"] = names
    if add["condition"]:
        request["ConditionExpression"] = add["condition"]

    def outcome() -> Any:
        dynamodb.delete_item(TableName=ranged, Key=key)
        if add["exists"]:
            dynamodb.put_item(TableName=ranged, Item=start)
        try:
            if add["transaction"]:
                dynamodb.transact_write_items(TransactItems=[{"Update": request}])
            else:
                dynamodb.update_item(**request)
            answer: Any = "ok"
        except ClientError as refused:
            answer = refused.response["Error"]["Code"]
        found = dynamodb.get_item(TableName=ranged, Key=key, ConsistentRead=True).get("Item")
        try:
            counted: Any = dynamodb.query(
                TableName=ranged,
                IndexName="by-g",
                KeyConditionExpression="G = :g",
                ExpressionAttributeValues={":g": {"S": "g"}},
            )["Items"]
        except ClientError as failed:  # moto fails on an invalid number it stored ("x")
            counted = failed.response["Error"]["Code"]
        # An item about as large as moto allows: stored, or refused, alike.
        big = {"PK": {"S": "big"}, "SK": {"N": "1"}, "V": {"S": "x" * size}}
        try:
            dynamodb.put_item(TableName=ranged, Item=big)
            stored: Any = len(dynamodb.get_item(TableName=ranged, Key=_key_of(big))["Item"])
        except ClientError as refused:
            stored = refused.response["Error"]["Code"]
        return answer, found, counted, stored

    # When the update is done by the emulator's way and by moto's own, then alike
    fast = outcome()
    with monkeypatch.context() as moto_only:
        moto_only.setattr(emulator_dynamodb, "adds_in_place", False)
        moto_only.setattr(Item, "__init__", unpatched(Item.__init__))
        assert outcome() == fast
    for name in (ranged, hashed):
        dynamodb.delete_table(TableName=name)


def _key_of(item: dict[str, Any]) -> dict[str, Any]:
    return {"PK": item["PK"], "SK": item["SK"]}


@pytest.mark.parametrize(
    "condition, forward",
    [("SK = :v", True), ("SK <= :v", True), ("SK >= :v", False), ("SK = :v", False)],
)
def test_a_page_full_at_the_range_s_end_says_there_may_be_more_as_moto_does(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, condition: str, forward: bool
) -> None:
    """At Limit, an item after the last match (outside the range) still gives a
    LastEvaluatedKey, as moto's walk of the whole partition (and DynamoDB) does."""
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    ranged, _hashed = _create_tables(dynamodb)
    for sk in RANGE_NUMBERS:
        dynamodb.put_item(TableName=ranged, Item={"PK": {"S": "a"}, "SK": {"N": sk}})
    request = {
        "TableName": ranged,
        "KeyConditionExpression": f"PK = :p AND {condition}",
        "ExpressionAttributeValues": {":p": {"S": "a"}, ":v": {"N": "2"}},
        "ScanIndexForward": forward,
        "Limit": 1,
    }

    _answers_alike(monkeypatch, lambda: _pages(dynamodb, request))
    first = dynamodb.query(**request)
    assert "LastEvaluatedKey" in first
    dynamodb.delete_table(TableName=ranged)


# Transactions: each operation on the ranged table, on one of a few items, any of them
# failing its condition, repeating an item, invalid (a string range key on a number one), or
# refused only when written (an increment of an attribute the item lacks).
_conditions = st.sampled_from(
    [None, "attribute_not_exists(PK)", "attribute_exists(PK)", "V = :v", "attribute_exists(G)"]
)
_operation = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["Put", "Update", "Delete", "ConditionCheck", "Increment", "Add"]),
        "key": st.sampled_from(RANGE_NUMBERS[:4]),
        "attributes": _attributes,
        "condition": _conditions,
        "invalid": st.sampled_from([False] * 9 + [True]),
    }
)


def _transaction_item(table: str, operation: dict[str, Any]) -> dict[str, Any]:
    key = {"PK": {"S": "a"}, "SK": {"N": operation["key"]}}
    if operation.get("invalid"):
        key["SK"] = {"S": operation["key"]}
    body: dict[str, Any] = {"TableName": table}
    kind = operation["kind"]
    if kind == "Put":
        body["Item"] = {**operation["attributes"], **key}
    elif kind == "Update":
        body.update(_update(table, 0, ("a", operation["key"]), operation["attributes"]))
        body["Key"] = key
    elif kind == "Increment":  # refused when written, where the item has no H
        kind = "Update"
        body.update(
            Key=key,
            UpdateExpression="SET H = H + :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
        )
    elif kind == "Add":  # a counter's ADD, done in place (undone by a copy of the mapping)
        kind = "Update"
        body.update(
            Key=key,
            UpdateExpression="ADD #n :two",
            ExpressionAttributeNames={"#n": "N"},
            ExpressionAttributeValues={":two": {"N": "2"}},
        )
    else:
        body["Key"] = key
    condition = operation["condition"]
    if kind == "ConditionCheck" and condition is None:
        condition = "attribute_exists(PK)"
    if condition is not None:
        body["ConditionExpression"] = condition
        if ":v" in condition:
            values = {**body.get("ExpressionAttributeValues", {}), ":v": {"S": "x"}}
            body["ExpressionAttributeValues"] = values
    return {kind: body}


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    before=st.lists(_write, max_size=6),
    transaction=st.lists(_operation, min_size=1, max_size=5),
)
@example(  # an item changed, then a write refused: the change is undone
    before=[("put", 0, ("a", "2"), {"V": {"S": "x"}})],
    transaction=[
        {"kind": "Update", "key": "2", "attributes": {"V": {"S": "y"}}, "condition": None},
        {"kind": "Increment", "key": "9", "attributes": {}, "condition": None},
    ],
)
@example(  # a counter added to, then a write refused: the addition is undone
    before=[("put", 0, ("a", "2"), {"V": {"S": "x"}})],
    transaction=[
        {"kind": "Add", "key": "2", "attributes": {}, "condition": None},
        {"kind": "Increment", "key": "9", "attributes": {}, "condition": None},
    ],
)
def test_a_transaction_checked_first_answers_and_writes_as_moto(
    emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    before: list[Any],
    transaction: list[dict[str, Any]],
) -> None:
    from talkturo.local import emulator_dynamodb

    dynamodb = boto3.client("dynamodb", region_name="us-east-1")

    def outcome() -> Any:
        names = _create_tables(dynamodb)
        for write in before:
            _apply(dynamodb, names, (write[0], 0, ("a", write[2][1]), write[3]))
        items = [_transaction_item(names[0], operation) for operation in transaction]
        try:
            dynamodb.transact_write_items(TransactItems=items)
            answer: Any = "ok"
        except ClientError as refused:
            reasons = refused.response.get("CancellationReasons") or []
            answer = (refused.response["Error"]["Code"], [r.get("Code") for r in reasons])
        stored = sorted(
            dynamodb.scan(TableName=names[0], ConsistentRead=True)["Items"],
            key=lambda item: item["SK"]["N"],
        )
        indexed = [
            dynamodb.query(
                TableName=names[0],
                IndexName="by-g",
                KeyConditionExpression="G = :g",
                ExpressionAttributeValues={":g": {"S": pk}},
            )["Items"]
            for pk in PKS
        ]
        for name in names:
            dynamodb.delete_table(TableName=name)
        return answer, stored, indexed

    checked_first = outcome()
    with monkeypatch.context() as moto_only:
        moto_only.setattr(emulator_dynamodb, "transactions_checked_first", False)
        assert outcome() == checked_first
