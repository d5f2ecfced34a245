"""One DynamoDB transaction whose writes carry labels, so a refusal says which write failed.

DynamoDB answers a cancelled transaction with one reason per write, in the order the request
listed them; pynamodb lists condition checks, then deletes, then puts, then updates. This keeps
the labels in that same order.

A put's request is built by `put_request`, not by pynamodb's `get_save_kwargs_from_instance`:
the same request (tests/integration/test_store_transact.py compares them item type by item
type), read straight from the item's values, without pynamodb's descriptor and type lookups for
every attribute (what a CSV import's hundreds of items a second spent most of their time in).
The models stay the record of what an item holds; an item pynamodb would refuse, or whose
attributes are not all plain (a map, a list), is built by pynamodb itself.
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import (
    Attribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
    VersionAttribute,
)
from pynamodb.exceptions import TransactWriteError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.operand import Path, Value
from pynamodb.expressions.update import Action, AddAction

from talkturo.store.table import Item, connection

# What DynamoDB (and the emulator) accept in one TransactWriteItems call.
MAX_WRITES = 100


class Refused(Exception):
    """A condition of the transaction failed; `labels` name the writes whose condition did."""

    def __init__(self, labels: set[str]) -> None:
        super().__init__(f"transaction refused by: {', '.join(sorted(labels))}")
        self.labels = labels


class Contention(Exception):
    """Another transaction touched the same items at the same moment; safe to try again."""


class Writes:
    def __init__(self) -> None:
        self._checks: list[tuple[str, Any]] = []
        self._deletes: list[tuple[str, Any]] = []
        self._puts: list[tuple[str, Any]] = []
        self._updates: list[tuple[str, Any]] = []

    def __len__(self) -> int:
        return len(self._checks) + len(self._deletes) + len(self._puts) + len(self._updates)

    def check(self, label: str, model: type[Item], pk: str, sk: str, condition: Condition) -> None:
        self._checks.append((label, (model, pk, sk, condition)))

    def put(self, label: str, item: Item, condition: Condition | None = None) -> None:
        self._puts.append((label, (item, condition)))

    def delete(
        self,
        label: str,
        item: Item,
        condition: Condition | None = None,
        *,
        add_version_condition: bool = True,
    ) -> None:
        self._deletes.append((label, (item, condition, add_version_condition)))

    def update(
        self, label: str, item: Item, actions: list[Action], condition: Condition | None = None
    ) -> None:
        self._updates.append((label, (item, actions, condition)))

    def extend(self, other: Writes) -> None:
        """Add `other`'s writes to these (one transaction for both)."""
        self._checks += other._checks
        self._deletes += other._deletes
        self._puts += other._puts
        self._updates += other._updates

    def commit(self) -> None:
        """Apply every write or none; Refused or Contention when DynamoDB cancels."""
        if not len(self):
            return
        connection()
        labels = [label for label, _ in self._checks + self._deletes + self._puts + self._updates]
        try:
            # As pynamodb's TransactWrite does, but each put built by `put_request` (and each
            # update by `update_request`).
            Item._get_connection().connection.transact_write_items(
                condition_check_items=[
                    model.get_operation_kwargs_from_class(pk, sk, condition)
                    for _, (model, pk, sk, condition) in self._checks
                ],
                delete_items=[
                    item.get_delete_kwargs_from_instance(condition, add_version_condition=versioned)
                    for _, (item, condition, versioned) in self._deletes
                ],
                put_items=[put_request(item, condition) for _, (item, condition) in self._puts],
                update_items=[
                    update_request(item, actions, condition)
                    for _, (item, actions, condition) in self._updates
                ],
            )
        except TransactWriteError as error:
            reasons = error.cancellation_reasons
            codes = {reason.code for reason in reasons if reason}
            if error.cause_response_code == "TransactionConflictException" or (
                "TransactionConflict" in codes
            ):
                raise Contention from error
            failed = {
                label
                for label, reason in zip(labels, reasons, strict=False)
                if reason and reason.code == "ConditionalCheckFailed"
            }
            if failed:
                raise Refused(failed) from error
            raise
        for _, (item, _) in self._puts:
            item.update_local_version_attribute()
        for _, (item, _, _) in self._updates:
            item.update_local_version_attribute()


# The attribute types `put_request` writes itself, each as pynamodb serializes it.
_PLAIN = (UnicodeAttribute, NumberAttribute, UnicodeSetAttribute)
# Per item class, its plain attributes in pynamodb's order (keys first), each as (python
# name, name in the table, type, serializer, may be absent), and its version attribute; None
# when some attribute is not plain. Read once: pynamodb's attribute names are properties, and
# most of an item's attributes (the indexes' keys) are absent.
_Field = tuple[str, str, str, Any, bool]
_Layout = tuple[list[_Field], "VersionAttribute | None"]
_layouts: dict[type[Item], _Layout | None] = {}


def _layout(model: type[Item]) -> _Layout | None:
    if model not in _layouts:
        attributes = model.get_attributes()
        plain = all(
            type(attribute) in _PLAIN or isinstance(attribute, VersionAttribute)
            for attribute in attributes.values()
        )
        keys = [name for name, a in attributes.items() if a.is_hash_key or a.is_range_key]
        order = keys + [name for name in attributes if name not in keys]
        fields = [
            (name, a.attr_name, a.attr_type, a.serialize, bool(a.null))
            for name, a in ((name, attributes[name]) for name in order)
        ]
        versions = [a for a in attributes.values() if isinstance(a, VersionAttribute)]
        _layouts[model] = (fields, versions[0] if versions else None) if plain else None
    return _layouts[model]


def put_request(item: Item, condition: Condition | None = None) -> dict[str, Any]:
    """The Put of a transaction that saves `item` under `condition`: what pynamodb's
    `get_save_kwargs_from_instance(condition)` answers (a versioned item's version condition
    and increment included)."""
    layout = _layout(type(item))
    if layout is None:
        return item.get_save_kwargs_from_instance(condition)
    fields, version = layout
    values = item.attribute_values
    written: dict[str, Any] = {}
    for name, attr_name, attr_type, serialize, nullable in fields:
        value = values.get(name)
        serialized = None if value is None else serialize(value)
        if serialized is None:
            if not nullable:
                return item.get_save_kwargs_from_instance(condition)  # pynamodb says why not
            continue
        written[attr_name] = {attr_type: serialized}
    current = values.get(item._version_attribute_name or "") if version is not None else None
    if version is not None:
        written[version.attr_name] = {
            version.attr_type: version.serialize(1 if current is None else current + 1)
        }
    request: dict[str, Any] = {"TableName": Item._get_connection().table_name, "Item": written}
    expression = _expression(condition, version, current)
    if expression is not None:
        text, names, expression_values = expression
        request["ConditionExpression"] = text
        if names:
            request["ExpressionAttributeNames"] = names
        if expression_values:
            request["ExpressionAttributeValues"] = expression_values
    return request


# A put's condition expression, serialized once per condition object and version case: the
# callers give the same few conditions to every item of a kind (a pynamodb condition is
# never changed once built), and serializing one walks its paths through pynamodb's name
# substitution each time. Keyed by the condition's id, kept with the condition so that the
# id stays its own; cleared when full (conditions built per item would only pass through).
_Expression = tuple[str, dict[str, str], dict[str, Any]]
_expressions: dict[tuple[int, bool | None], tuple[Condition | None, _Expression | None]] = {}
_EXPRESSIONS_MAX = 256
# The version a versioned item's condition holds in the cached form, replaced by the item's.
_SOME_VERSION = 0


def _expression(
    condition: Condition | None, version: Attribute[Any] | None, current: Any
) -> _Expression | None:
    """`condition` (and the version condition: absent when `current` is None, else equal to
    it) as pynamodb serializes it: the expression, its names and its values."""
    case = None if version is None else current is None
    key = (id(condition), case)
    cached = _expressions.get(key)
    if cached is None or cached[0] is not condition:
        if len(_expressions) >= _EXPRESSIONS_MAX:
            _expressions.clear()
        whole = condition
        if version is not None:
            whole &= version.does_not_exist() if current is None else version == _SOME_VERSION
        serialized: _Expression | None = None
        if whole is not None:
            names: dict[str, str] = {}
            expression_values: dict[str, Any] = {}
            text = whole.serialize(names, expression_values)
            serialized = (text, {v: k for k, v in names.items()}, expression_values)
        cached = _expressions[key] = (condition, serialized)
    serialized = cached[1]
    if serialized is None:
        return None
    # Copies: the request may be changed by its sender, the cached form must stay as it is.
    text, names, expression_values = serialized
    if version is None or current is None:
        return text, dict(names), dict(expression_values)
    # The version's value is the last placeholder the condition holds (`AND` writes its right
    # side last): the item's own version there.
    *others, last = expression_values
    compared = {name: expression_values[name] for name in others}
    compared[last] = {version.attr_type: version.serialize(current)}
    return text, dict(names), compared


# An update that adds a number to one attribute (a company's contact count, once a row), per
# item class, attribute and condition object: what pynamodb answers for it, with the key and
# the number left to fill in (the form and the placeholder of the number), kept with the
# condition; no form when the update is not of that form after all (pynamodb builds those).
_Addition = tuple[Condition | None, tuple[dict[str, Any], str] | None]
_additions: dict[tuple[type[Item], tuple[str, ...], int], _Addition] = {}
# Stands for the number added while the form is built (never sent).
_SOME_NUMBER = {"N": "0.5"}


def update_request(item: Item, actions: list[Action], condition: Condition | None = None) -> Any:
    """The Update of a transaction that applies `actions` to `item` under `condition`: what
    pynamodb's `get_update_kwargs_from_instance(actions, condition)` answers."""
    model = type(item)
    action = actions[0] if len(actions) == 1 else None
    if type(action) is not AddAction or model._version_attribute_name is not None:
        return item.get_update_kwargs_from_instance(actions, condition)
    path, value = action.values
    if not isinstance(path, Path) or not isinstance(value, Value):
        return item.get_update_kwargs_from_instance(actions, condition)
    key = (model, tuple(path.path), id(condition))
    cached = _additions.get(key)
    if cached is None or cached[0] is not condition:
        if len(_additions) >= _EXPRESSIONS_MAX:
            _additions.clear()
        cached = _additions[key] = (condition, _addition(item, path, condition))
    hash_value, range_value = item._get_hash_range_key_serialized_values()
    hash_key, range_key = model._hash_key_attribute(), model._range_key_attribute()
    addition = cached[1]
    if addition is None or hash_value is None or range_value is None or range_key is None:
        return item.get_update_kwargs_from_instance(actions, condition)
    form, placeholder = addition
    request = dict(form)
    request["TableName"] = Item._get_connection().table_name
    request["Key"] = {
        hash_key.attr_name: {hash_key.attr_type: hash_value},
        range_key.attr_name: {range_key.attr_type: range_value},
    }
    request["ExpressionAttributeNames"] = dict(form["ExpressionAttributeNames"])
    values = request["ExpressionAttributeValues"] = dict(form["ExpressionAttributeValues"])
    values[placeholder] = value.values[0]
    return request


def _addition(
    item: Item, path: Path, condition: Condition | None
) -> tuple[dict[str, Any], str] | None:
    form = item.get_update_kwargs_from_instance(
        [AddAction(path, Value(dict(_SOME_NUMBER)))], condition
    )
    values = form.get("ExpressionAttributeValues", {})
    placeholders = [name for name, value in values.items() if value == _SOME_NUMBER]
    if len(placeholders) != 1 or "ExpressionAttributeNames" not in form:
        return None
    return form, placeholders[0]
