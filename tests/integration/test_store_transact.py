"""A transaction's puts, built without pynamodb's per-attribute work, are pynamodb's own."""

from __future__ import annotations

import importlib
import pkgutil
from datetime import UTC
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
    UTCDateTimeAttribute,
    VersionAttribute,
)
from pynamodb.expressions.condition import Condition
from pynamodb.models import Model as PynamoModel

import talkturo.store
from talkturo.local.template import Stack
from talkturo.store import table
from talkturo.store.contacts import ContactItem, PhoneGuardItem
from talkturo.store.table import Item
from talkturo.store.transact import Refused, Writes, put_request, update_request


def _models() -> list[type[Item]]:
    """Every item type the store writes."""
    for module in pkgutil.iter_modules(talkturo.store.__path__):
        importlib.import_module(f"talkturo.store.{module.name}")
    found: list[type[Item]] = []
    waiting = list(Item.__subclasses__())
    while waiting:
        model = waiting.pop()
        found.append(model)
        waiting.extend(model.__subclasses__())
    return sorted(set(found), key=lambda model: model.__name__)


MODELS = _models()


def _value(attribute: Any) -> st.SearchStrategy[Any]:
    if isinstance(attribute, VersionAttribute | NumberAttribute):
        return st.integers(min_value=0, max_value=10**12)
    if isinstance(attribute, UnicodeSetAttribute):
        return st.sets(st.text(min_size=1, max_size=5), min_size=1, max_size=3)
    if isinstance(attribute, UnicodeAttribute):
        return st.text(max_size=8)  # "" too: pynamodb writes it as it is
    if isinstance(attribute, UTCDateTimeAttribute):
        return st.datetimes(timezones=st.just(UTC))
    if isinstance(attribute, BooleanAttribute):
        return st.booleans()
    if isinstance(attribute, ListAttribute):
        return st.lists(st.text(max_size=4), max_size=3)
    if type(attribute).__name__ == "DecimalAttribute":
        return st.decimals(allow_nan=False, allow_infinity=False, places=2)
    raise AssertionError(f"no values for {type(attribute).__name__}")  # a new type to cover


@st.composite
def _values(draw: st.DrawFn, model: type[Item]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, attribute in model.get_attributes().items():
        if attribute.is_hash_key or attribute.is_range_key:
            values[name] = draw(st.text(min_size=1, max_size=8))
        elif not attribute.null or draw(st.booleans()):  # an optional one absent or given
            values[name] = draw(_value(attribute))
    return values


def _items(model: type[Item]) -> st.SearchStrategy[Item]:
    return _values(model).map(lambda values: model(**values))


def _conditions(model: type[Item]) -> list[Condition | None]:
    return [
        None,
        model.pk.does_not_exist(),
        model.pk.exists() & (model.sk == "x") & model.gsi1_pk.startswith("A#"),
    ]


def test_every_item_type_is_covered() -> None:
    assert ContactItem in MODELS and PhoneGuardItem in MODELS and len(MODELS) > 20
    assert not any(
        isinstance(attribute, MapAttribute)
        for model in MODELS
        for attribute in model.get_attributes().values()
    ), "a map attribute: put_request leaves such items to pynamodb; cover that here"


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_a_put_is_pynamodbs_own(stack: Stack, model: type[Item]) -> None:
    table.connection()

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(item=_items(model), which=st.integers(min_value=0, max_value=2))
    def same(item: Item, which: int) -> None:
        condition = _conditions(model)[which]
        ours = put_request(item, condition)
        theirs = item.get_save_kwargs_from_instance(condition)
        assert ours == theirs
        assert list(ours["Item"]) == list(theirs["Item"])  # the same body, key for key

    same()


# Built once, as the store builds the conditions it gives every item of a kind.
_KEPT = {model: _conditions(model) for model in MODELS}


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_a_put_under_a_condition_used_again_is_pynamodbs_own(
    stack: Stack, model: type[Item]
) -> None:
    table.connection()

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(items=st.lists(st.tuples(_items(model), st.integers(0, 2)), min_size=1, max_size=4))
    def same(items: list[tuple[Item, int]]) -> None:
        for item, which in items:
            condition = _KEPT[model][which]
            ours = put_request(item, condition)
            assert ours == item.get_save_kwargs_from_instance(condition)
            # A request changed by whoever sends it leaves the next one as it should be.
            ours.get("ExpressionAttributeValues", {}).clear()
            ours.get("ExpressionAttributeNames", {}).clear()
            assert put_request(item, condition) == item.get_save_kwargs_from_instance(condition)

    same()


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_an_item_is_built_as_pynamodb_builds_it(model: type[Item]) -> None:
    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(values=_values(model), keys_apart=st.booleans(), new=st.booleans())
    def same(values: dict[str, Any], keys_apart: bool, new: bool) -> None:
        given = dict(values)
        keys = (given.pop("pk"), given.pop("sk")) if keys_apart else ()
        ours = model(*keys, _user_instantiated=new, **given)
        theirs = model.__new__(model)
        PynamoModel.__init__(theirs, *keys, _user_instantiated=new, **given)
        assert vars(ours) == vars(theirs)
        assert list(ours.attribute_values) == list(theirs.attribute_values)

    same()


def test_an_item_refuses_what_pynamodb_refuses() -> None:
    with pytest.raises(ValueError, match="does not exist"):
        PhoneGuardItem("A#1", "CTPHONE#+14155550100", phone="+14155550100")
    with pytest.raises(ValueError, match="does not exist"):
        PynamoModel.__init__(
            PhoneGuardItem.__new__(PhoneGuardItem), "A#1", "x", phone="+14155550100"
        )


def _counted(model: type[Item]) -> list[tuple[str, Any]]:
    """The number attributes an update may add to (the version is pynamodb's to move)."""
    return [
        (name, attribute)
        for name, attribute in model.get_attributes().items()
        if type(attribute) is NumberAttribute
        and not (attribute.is_hash_key or attribute.is_range_key)
    ]


COUNTED = [model for model in MODELS if _counted(model)]


@pytest.mark.parametrize("model", COUNTED, ids=lambda model: model.__name__)
def test_an_update_is_pynamodbs_own(stack: Stack, model: type[Item]) -> None:
    table.connection()
    attributes = _counted(model)

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        writes=st.lists(
            st.tuples(
                st.text(min_size=1, max_size=8),
                st.text(min_size=1, max_size=8),
                st.integers(0, len(attributes) - 1),
                st.integers(min_value=-(10**6), max_value=10**6),
                st.integers(0, 2),
                st.booleans(),
            ),
            min_size=1,
            max_size=4,
        )
    )
    def same(writes: list[tuple[str, str, int, int, int, bool]]) -> None:
        for pk, sk, which, delta, kept, add in writes:
            item = model(pk, sk)
            attribute = attributes[which][1]
            condition = _KEPT[model][kept]
            # Actions of their own each: pynamodb adds a versioned item's increment to them.
            ours = update_request(
                item, [attribute.add(delta) if add else attribute.set(delta)], condition
            )
            theirs = item.get_update_kwargs_from_instance(
                [attribute.add(delta) if add else attribute.set(delta)], condition
            )
            assert ours == theirs
            assert list(ours) == list(theirs)
            ours["ExpressionAttributeValues"].clear()  # changed by its sender: not the next one

    same()


def test_an_item_pynamodb_refuses_is_refused_alike(stack: Stack) -> None:
    table.connection()
    guard = PhoneGuardItem("A#1", "CTPHONE#+14155550100")  # contact_id is required
    with pytest.raises(ValueError, match="contact_id"):
        put_request(guard)


def test_a_versioned_put_moves_the_version_on_only_when_written(stack: Stack) -> None:
    table.connection()
    contact = ContactItem("A#1", "CT#1", doc="{}")
    writes = Writes()
    writes.put("contact", contact)
    writes.commit()
    assert contact.version == 1
    stale = ContactItem("A#1", "CT#1", doc="{}")  # no version: as if new, which it is not
    again = Writes()
    again.put("contact", stale)
    with pytest.raises(Refused):
        again.commit()
    assert stale.version is None
    read = ContactItem.get("A#1", "CT#1", consistent_read=True)
    assert read.version == 1
    read.doc = '{"changed": true}'
    writes = Writes()
    writes.put("contact", read)
    writes.commit()
    assert read.version == 2
    assert ContactItem.get("A#1", "CT#1", consistent_read=True).doc == '{"changed": true}'
