"""Two shortcuts for the DynamoDB client's requests: the same bytes on the wire, less work.

botocore spends more on a transaction of a hundred items than the items cost to build, and a
CSV import writes such transactions back to back:

- The body. botocore writes a request's JSON by walking the operation's input shapes value by
  value; for DynamoDB's JSON protocol that walk changes nothing but blobs (base64-encoded), so
  the body of a request without a blob is its parameters as JSON: the same document, written
  by orjson (a tenth of `json.dumps`' time on a transaction of a hundred items; compact, and
  UTF-8 rather than escapes, which the service reads alike). A request holding bytes, or
  anything else orjson does not write as JSON's own types (sets, decimals, keys that are not
  strings, integers beyond 64 bits), or a map key `B`/`BS` (a binary attribute value, which
  botocore would encode), takes botocore's walk.
- The endpoint. botocore evaluates the endpoint rules with the table names of a request, which
  for a transaction it reads by a JMESPath search over every one of its items
  (`ResourceArnList`). The rules read only the first of them (an ARN names the account), so
  the search is given each table once, in the order of first use: the same first name, the
  same endpoint.

tests/unit/test_store_wire.py proves both equal to botocore's own answers on real requests (the
body: the same JSON document).
"""

from __future__ import annotations

from typing import Any

import orjson
from botocore.validate import ParamValidationDecorator

# Blob members of DynamoDB's attribute values (botocore base64-encodes them).
_BLOB_KEYS = (b'"B":', b'"BS":')
_TRANSACTIONS = frozenset({"TransactWriteItems", "TransactGetItems"})


class _JsonBody:
    """botocore's serializer, but a body without blobs is written by orjson at once."""

    def __init__(self, serializer: Any) -> None:
        self._serializer = serializer

    def serialize_to_request(self, parameters: dict[str, Any], operation_model: Any) -> Any:
        try:
            # Strictly JSON's types: orjson would also write what botocore's walk refuses or
            # writes its own way (dates, dataclasses, subclasses of str or dict).
            body = orjson.dumps(
                parameters,
                option=orjson.OPT_PASSTHROUGH_DATETIME
                | orjson.OPT_PASSTHROUGH_DATACLASS
                | orjson.OPT_PASSTHROUGH_SUBCLASS,
            )
        except TypeError:  # orjson.JSONEncodeError is one
            return self._serializer.serialize_to_request(parameters, operation_model)
        if any(key in body for key in _BLOB_KEYS):
            return self._serializer.serialize_to_request(parameters, operation_model)
        # What botocore builds around the body (method, path, headers) for no parameters.
        request = self._serializer.serialize_to_request({}, operation_model)
        request["body"] = body
        return request

    def __getattr__(self, name: str) -> Any:
        return getattr(self._serializer, name)


class _TablesOnce:
    """botocore's endpoint resolver, asked about a transaction's tables once each."""

    def __init__(self, resolver: Any) -> None:
        self._resolver = resolver

    def construct_endpoint(
        self, operation_model: Any, call_args: dict[str, Any], request_context: dict[str, Any]
    ) -> Any:
        items = call_args.get("TransactItems")
        if operation_model.name in _TRANSACTIONS and isinstance(items, list):
            call_args = {**call_args, "TransactItems": _tables_once(items)}
        return self._resolver.construct_endpoint(
            operation_model=operation_model, call_args=call_args, request_context=request_context
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resolver, name)


def _tables_once(items: list[Any]) -> list[dict[str, dict[str, Any]]]:
    """One entry per table the items name, in the order of their first use."""
    seen: dict[str, dict[str, dict[str, Any]]] = {}
    for item in items:
        if not isinstance(item, dict):
            return items
        for operation, asked in item.items():
            table = asked.get("TableName") if isinstance(asked, dict) else None
            if not isinstance(table, str):
                return items  # not what the rules expect: let botocore read it as it is
            seen.setdefault(table, {operation: {"TableName": table}})
    return list(seen.values())


def streamline(client: Any) -> None:
    """Take both shortcuts in `client` (a botocore DynamoDB client), once. The body's only
    without parameter validation (pynamodb's clients), which would have to see the parameters."""
    serializer = client._serializer
    if not isinstance(serializer, _JsonBody | ParamValidationDecorator):
        client._serializer = _JsonBody(serializer)
    resolver = client._ruleset_resolver
    if resolver is not None and not isinstance(resolver, _TablesOnce):
        client._ruleset_resolver = _TablesOnce(resolver)
