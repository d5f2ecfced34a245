"""Pure pieces of the core: ids, credits arithmetic, cursors, header parsing, error params."""

from __future__ import annotations

import base64
import json
from decimal import Decimal

import pytest
from pydantic import ValidationError

from talkturo.api.errors import _param_of
from talkturo.domain.common import quantize_credits
from talkturo.domain.credits import CreditGrant, LedgerEntry
from talkturo.errors import AuthenticationFailed, InvalidRequest
from talkturo.ids import has_prefix, new_id
from talkturo.services.accounts import authenticate, hash_secret
from talkturo.store.paging import decode_cursor


def test_ids_are_prefixed_and_sort_by_creation() -> None:
    ids = [new_id("assistant") for _ in range(50)]
    assert all(has_prefix(i, "assistant") for i in ids)
    assert ids == sorted(ids)
    assert not has_prefix(ids[0], "contact")


def test_credits_have_four_places_and_serialise_as_strings() -> None:
    assert quantize_credits(Decimal("1.23456")) == Decimal("1.2346")
    entry = LedgerEntry(
        id="txn_x",
        kind="grant",
        amount=Decimal("10"),
        idempotency_key="k",
        created_at="2026-01-01T00:00:00Z",
    )
    assert json.loads(entry.model_dump_json())["amount"] == "10.0000"


def test_credit_grant_refuses_zero_and_too_many_places() -> None:
    for amount in ("0", "0.00001"):
        with pytest.raises(ValidationError):
            CreditGrant(kind="grant", amount=Decimal(amount))
    assert CreditGrant(kind="adjustment", amount=Decimal("-2.5")).amount == Decimal("-2.5")


def test_cursor_must_belong_to_the_callers_partition() -> None:
    mine = base64.urlsafe_b64encode(
        json.dumps({"PK": {"S": "A#acct_1"}, "SK": {"S": "TXN#1"}}).encode()
    ).decode()
    assert decode_cursor(mine, partition="A#acct_1", index=None)["SK"] == {"S": "TXN#1"}
    for cursor in (mine, "%%%", base64.urlsafe_b64encode(b"[1]").decode()):
        with pytest.raises(InvalidRequest) as caught:
            decode_cursor(cursor, partition="A#acct_2", index=None)
        assert caught.value.param == "starting_after"


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic dXNlcg==", "tk_abc"])
def test_malformed_authorization_is_refused_before_any_lookup(header: str | None) -> None:
    # Sockets are blocked here: reaching the store would fail differently.
    with pytest.raises(AuthenticationFailed):
        authenticate(header)


def test_secrets_are_hashed_not_stored() -> None:
    assert hash_secret("tk_a") != hash_secret("tk_b")
    assert len(hash_secret("tk_a")) == 64


def test_error_param_drops_the_location_prefix() -> None:
    assert _param_of(("body", "llm", "model")) == "llm.model"
    assert _param_of(("query", "limit")) == "limit"
    assert _param_of(("body", "tools", 2, "config", "url")) == "tools[2].config.url"
    assert _param_of(("body",)) is None
