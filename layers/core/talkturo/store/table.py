"""The single DynamoDB table: its key attributes, indexes, and the base of every item model.

Every item carries PK/SK and, when it is reachable another way, GSIn keys. Items of one account
live under partition keys that start with `A#<account id>`, so tenancy is in every key.
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import Attribute, NumberAttribute, UnicodeAttribute, VersionAttribute
from pynamodb.connection import TableConnection
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from talkturo.config import get_settings
from talkturo.store import wire


class _Gsi(GlobalSecondaryIndex[Any]):
    """Generic, overloaded indexes (GSInPK / GSInSK); each entity documents what it puts there.

    Four exist from the start because CloudFormation adds only one index per table update.
    """


class Gsi1(_Gsi):
    class Meta:
        index_name = "GSI1"
        projection = AllProjection()

    gsi1_pk = UnicodeAttribute(hash_key=True, attr_name="GSI1PK")
    gsi1_sk = UnicodeAttribute(range_key=True, attr_name="GSI1SK")


class Gsi2(_Gsi):
    class Meta:
        index_name = "GSI2"
        projection = AllProjection()

    gsi2_pk = UnicodeAttribute(hash_key=True, attr_name="GSI2PK")
    gsi2_sk = UnicodeAttribute(range_key=True, attr_name="GSI2SK")


class Gsi3(_Gsi):
    class Meta:
        index_name = "GSI3"
        projection = AllProjection()

    gsi3_pk = UnicodeAttribute(hash_key=True, attr_name="GSI3PK")
    gsi3_sk = UnicodeAttribute(range_key=True, attr_name="GSI3SK")


class Gsi4(_Gsi):
    class Meta:
        index_name = "GSI4"
        projection = AllProjection()

    gsi4_pk = UnicodeAttribute(hash_key=True, attr_name="GSI4PK")
    gsi4_sk = UnicodeAttribute(range_key=True, attr_name="GSI4SK")


class Item(Model):
    """Base of every item model. All share one table and one connection."""

    class Meta:
        table_name = "unconfigured"
        region = "us-east-1"
        max_retry_attempts = 3
        connect_timeout_seconds = 2
        read_timeout_seconds = 5

    pk = UnicodeAttribute(hash_key=True, attr_name="PK")
    sk = UnicodeAttribute(range_key=True, attr_name="SK")
    gsi1_pk = UnicodeAttribute(null=True, attr_name="GSI1PK")
    gsi1_sk = UnicodeAttribute(null=True, attr_name="GSI1SK")
    gsi2_pk = UnicodeAttribute(null=True, attr_name="GSI2PK")
    gsi2_sk = UnicodeAttribute(null=True, attr_name="GSI2SK")
    gsi3_pk = UnicodeAttribute(null=True, attr_name="GSI3PK")
    gsi3_sk = UnicodeAttribute(null=True, attr_name="GSI3SK")
    gsi4_pk = UnicodeAttribute(null=True, attr_name="GSI4PK")
    gsi4_sk = UnicodeAttribute(null=True, attr_name="GSI4SK")
    # DynamoDB's TTL attribute (epoch seconds): items that carry it are deleted after it passes.
    expires_at = NumberAttribute(null=True, attr_name="expires_at")

    gsi1 = Gsi1()
    gsi2 = Gsi2()
    gsi3 = Gsi3()
    gsi4 = Gsi4()

    def __init__(
        self,
        hash_key: Any = None,
        range_key: Any = None,
        _user_instantiated: bool = True,
        **attributes: Any,
    ) -> None:
        # What pynamodb's constructor does, value by value through each attribute's descriptor,
        # done at once for the items where that comes to storing the values given (a CSV
        # import builds ten or so items a row): no defaults, every attribute given stored as
        # it is. Any other item is built by pynamodb.
        stored = _stored_names(type(self))
        if hash_key is not None and self._hash_keyname is not None:
            attributes[self._hash_keyname] = hash_key
        if range_key is not None and self._range_keyname is not None:
            attributes[self._range_keyname] = range_key
        if stored is None or not stored.issuperset(attributes):
            super().__init__(hash_key, range_key, _user_instantiated, **attributes)
            return
        self.attribute_values = attributes

    @classmethod
    def _get_connection(cls) -> TableConnection:
        # pynamodb gives each model class its own connection (and botocore client); every item
        # type here lives in the same table, so they all share the base class's one.
        if cls is not Item:
            return Item._get_connection()
        return super()._get_connection()


# Per item class, the attributes whose values its constructor stores as they are given, or None
# when the constructor does more (a default to set, a discriminator). Keyed by python name,
# which is how pynamodb's descriptors store them.
_stored: dict[type[Item], frozenset[str] | None] = {}


def _stored_names(model: type[Item]) -> frozenset[str] | None:
    if model not in _stored:
        attributes = model.get_attributes()
        plain = (
            model._hash_keyname is not None
            and model._range_keyname is not None
            and model._get_discriminator_attribute() is None
        ) and all(
            attribute.default is None and attribute.default_for_new is None
            for attribute in attributes.values()
        )
        python_names: dict[str, str] = getattr(model, "_dynamo_to_python_attrs", {})
        names = frozenset(
            name
            for name, attribute in attributes.items()
            if type(attribute).__set__ is Attribute.__set__
            and python_names.get(attribute.attr_name, attribute.attr_name) == name
        )
        _stored[model] = names if plain else None
    return _stored[model]


class Document(Item):
    """An entity stored as its domain model's JSON, with a version for optimistic locking."""

    doc = UnicodeAttribute()
    version = VersionAttribute()


_configured_for: tuple[str, str] | None = None


def connection() -> TableConnection:
    """Point every model at the configured table (lazily, once) and return the shared connection."""
    global _configured_for
    settings = get_settings()
    wanted = (settings.table_name, settings.aws_region)
    if _configured_for != wanted:
        Item.Meta.table_name = settings.table_name
        Item.Meta.region = settings.aws_region
        Item._connection = None
        _configured_for = wanted
        table = Item._get_connection()
        wire.streamline(table.connection.client)
        return table
    return Item._get_connection()


def reset() -> None:
    """Forget the cached connection (tests switch tables and endpoints)."""
    global _configured_for
    _configured_for = None
    Item._connection = None
