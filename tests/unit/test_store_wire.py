"""The DynamoDB client's shortcuts answer what botocore's own walk answers: the same request,
its body the same JSON document."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import botocore.session
import pytest
from botocore.config import Config
from hypothesis import given, settings
from hypothesis import strategies as st

from talkturo.store import wire


def _client(endpoint_url: str | None, *, validated: bool = False) -> Any:
    """A client as pynamodb makes them (no parameter validation), unless `validated`."""
    session = botocore.session.get_session()
    session.set_credentials("key", "secret")
    config = Config(parameter_validation=validated)
    return session.create_client("dynamodb", "eu-west-1", endpoint_url=endpoint_url, config=config)


_text = st.text(max_size=12)
_scalar = st.one_of(
    st.builds(lambda s: {"S": s}, _text),
    st.builds(lambda n: {"N": str(n)}, st.integers()),
    st.builds(lambda b: {"BOOL": b}, st.booleans()),
    st.just({"NULL": True}),
    st.builds(lambda ss: {"SS": ss}, st.lists(_text, min_size=1, max_size=3, unique=True)),
    st.builds(lambda ns: {"NS": [str(n) for n in ns]}, st.lists(st.integers(), min_size=1)),
    st.builds(lambda b: {"B": b}, st.binary(max_size=8)),
    st.builds(lambda bs: {"BS": bs}, st.lists(st.binary(max_size=4), min_size=1, max_size=2)),
)
_value = st.recursive(
    _scalar,
    lambda inner: st.one_of(
        st.builds(lambda m: {"M": m}, st.dictionaries(_text, inner, max_size=3)),
        st.builds(lambda items: {"L": items}, st.lists(inner, max_size=3)),
    ),
    max_leaves=8,
)
_item = st.dictionaries(st.sampled_from(["PK", "SK", "doc", "B", "tags", "n", "é"]), _value)


def _put(table: str, item: dict[str, Any]) -> dict[str, Any]:
    return {
        "Put": {
            "TableName": table,
            "Item": {"PK": {"S": "A#1"}, "SK": {"S": "CT#1"}, **item},
            "ConditionExpression": "attribute_not_exists (#0)",
            "ExpressionAttributeNames": {"#0": "PK"},
        }
    }


@settings(max_examples=200, deadline=None)
@given(items=st.lists(_item, min_size=1, max_size=6))
def test_a_body_is_botocores_own(items: list[dict[str, Any]]) -> None:
    client = _client("http://127.0.0.1:1")
    model = client.meta.service_model.operation_model("TransactWriteItems")
    serializer = client._serializer
    params = {"TransactItems": [_put("main", item) for item in items]}
    _assert_same(
        wire._JsonBody(serializer).serialize_to_request(params, model), serializer, params, model
    )


def _assert_same(ours: dict[str, Any], serializer: Any, params: Any, model: Any) -> None:
    """The request botocore builds, the body read as JSON (bytes botocore would write, too)."""
    theirs = serializer.serialize_to_request(params, model)
    assert {**ours, "body": None} == {**theirs, "body": None}
    assert isinstance(ours["body"], bytes)
    assert json.loads(ours["body"]) == json.loads(theirs["body"])


@pytest.mark.parametrize(
    ("operation", "params"),
    [
        ("GetItem", {"TableName": "main", "Key": {"PK": {"S": "A#1"}}, "ConsistentRead": True}),
        (
            "Query",
            {
                "TableName": "main",
                "IndexName": "GSI1",
                "KeyConditionExpression": "#0 = :0",
                "ExpressionAttributeNames": {"#0": "GSI1PK"},
                "ExpressionAttributeValues": {":0": {"S": "A#1#CO#2"}},
                "Limit": 25,
                "ScanIndexForward": False,
                "ExclusiveStartKey": {"PK": {"S": "A#1"}, "SK": {"B": b"\x00\xff"}},
            },
        ),
        (
            "UpdateItem",
            {
                "TableName": "main",
                "Key": {"PK": {"S": "A#1"}, "SK": {"S": "IMP#1"}},
                "UpdateExpression": "ADD #0 :0",
                "ExpressionAttributeNames": {"#0": "failed_attempts"},
                "ExpressionAttributeValues": {":0": {"N": "1"}},
            },
        ),
        ("BatchGetItem", {"RequestItems": {"main": {"Keys": [{"PK": {"S": "\u202e\x00"}}]}}}),
    ],
)
def test_every_operation_is_botocores_own(operation: str, params: dict[str, Any]) -> None:
    client = _client("http://127.0.0.1:1")
    model = client.meta.service_model.operation_model(operation)
    serializer = client._serializer
    _assert_same(
        wire._JsonBody(serializer).serialize_to_request(params, model), serializer, params, model
    )


class _Name(str):
    pass


@dataclass
class _Key:
    S: str


@pytest.mark.parametrize(
    "value",
    [
        {"S": _Name("A#1")},  # a subclass of str
        _Key("A#1"),  # what orjson alone would write as an object
        {"S": datetime(2026, 1, 1, tzinfo=UTC)},  # what orjson alone would write as text
        {"N": 2**70},  # beyond orjson's integers
    ],
)
def test_what_json_does_not_hold_as_it_is_takes_botocores_walk(value: Any) -> None:
    client = _client("http://127.0.0.1:1")
    model = client.meta.service_model.operation_model("GetItem")
    params = {"TableName": "main", "Key": {"PK": value}}
    calls: list[Any] = []

    class Walk:
        def serialize_to_request(self, parameters: Any, operation_model: Any) -> Any:
            calls.append(parameters)
            return {"body": b"walked"}

    assert wire._JsonBody(Walk()).serialize_to_request(params, model) == {"body": b"walked"}
    assert calls == [params]


@pytest.mark.parametrize("endpoint_url", [None, "http://127.0.0.1:1"])
@pytest.mark.parametrize(
    "tables",
    [
        ["main"] * 40,
        ["main", "other", "main"],
        ["arn:aws:dynamodb:eu-west-1:123456789012:table/main"] * 3 + ["main"],
        ["main", "arn:aws:dynamodb:eu-west-1:123456789012:table/main"],
    ],
)
def test_the_endpoint_is_botocores_own(endpoint_url: str | None, tables: list[str]) -> None:
    client = _client(endpoint_url)
    model = client.meta.service_model.operation_model("TransactWriteItems")
    resolver = client._ruleset_resolver
    params = {"TransactItems": [_put(table, {}) for table in tables]}
    ours = wire._TablesOnce(resolver).construct_endpoint(model, params, {})
    theirs = resolver.construct_endpoint(model, params, {})
    assert (ours.url, ours.headers, ours.properties) == (
        theirs.url,
        theirs.headers,
        theirs.properties,
    )


def test_a_streamlined_client_still_sends_what_it_did() -> None:
    client = _client("http://127.0.0.1:1")
    wire.streamline(client)
    wire.streamline(client)  # once is enough; twice changes nothing
    assert isinstance(client._serializer, wire._JsonBody)
    assert not isinstance(client._serializer._serializer, wire._JsonBody)
    assert isinstance(client._ruleset_resolver, wire._TablesOnce)
    assert not isinstance(client._ruleset_resolver._resolver, wire._TablesOnce)


def test_a_client_that_validates_keeps_botocores_body() -> None:
    client = _client("http://127.0.0.1:1", validated=True)
    serializer = client._serializer
    wire.streamline(client)
    assert client._serializer is serializer
    assert isinstance(client._ruleset_resolver, wire._TablesOnce)
