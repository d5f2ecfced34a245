"""The credit ledger: exactly once per idempotency key, balance == sum of entries, always."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from talkturo.errors import Conflict, InsufficientCredits
from talkturo.services import credits
from tests.conftest import Tenant


def _all_entries(account_id: str) -> list:
    found, cursor = [], None
    while True:
        page = credits.entries(account_id, limit=100, starting_after=cursor)
        found.extend(page.data)
        if not page.has_more:
            return found
        cursor = page.next_cursor


def test_signup_grant_is_the_first_entry(tenant: Tenant) -> None:
    entries = _all_entries(tenant.account_id)
    assert [(e.kind, e.amount) for e in entries] == [("grant", Decimal("10.0000"))]
    assert credits.balance(tenant.account_id).balance == Decimal("10")


def test_same_idempotency_key_writes_once(tenant: Tenant) -> None:
    # Given a purchase recorded under a payment's id
    first = credits.record(tenant.account_id, "purchase", Decimal(20), idempotency_key="pi_1")
    # When the same payment is reported again
    again = credits.record(tenant.account_id, "purchase", Decimal(20), idempotency_key="pi_1")
    # Then it is the same entry and the balance moved once
    assert again.id == first.id
    assert credits.balance(tenant.account_id).balance == Decimal(30)
    # And reusing the key for something else is refused
    with pytest.raises(Conflict):
        credits.record(tenant.account_id, "purchase", Decimal(50), idempotency_key="pi_1")


def test_usage_never_takes_the_balance_below_zero(tenant: Tenant) -> None:
    with pytest.raises(InsufficientCredits):
        credits.record(tenant.account_id, "usage", Decimal("-10.5"), idempotency_key="call_x:1")
    assert credits.balance(tenant.account_id).balance == Decimal(10)
    assert len(_all_entries(tenant.account_id)) == 1
    # Final settlement may overrun by the last seconds of a call
    credits.record(
        tenant.account_id,
        "usage",
        Decimal("-10.5"),
        idempotency_key="call_x:final",
        allow_negative_balance=True,
    )
    assert credits.balance(tenant.account_id).balance == Decimal("-0.5")


def test_signs_are_checked(tenant: Tenant) -> None:
    from talkturo.errors import InvalidRequest

    with pytest.raises(InvalidRequest):
        credits.record(tenant.account_id, "usage", Decimal(1), idempotency_key="a")
    with pytest.raises(InvalidRequest):
        credits.record(tenant.account_id, "purchase", Decimal(-1), idempotency_key="b")


@pytest.mark.parametrize("amount", ["1e30", "-1e23", "1000000.0001", "NaN", "-Infinity"])
def test_amounts_beyond_the_bound_are_refused_naming_the_amount(
    tenant: Tenant, amount: str
) -> None:
    from talkturo.errors import InvalidRequest

    with pytest.raises(InvalidRequest) as refused:
        credits.record(tenant.account_id, "adjustment", Decimal(amount), idempotency_key="huge")
    assert refused.value.param == "amount"


def test_concurrent_writers_keep_balance_equal_to_ledger_sum(tenant: Tenant) -> None:
    # Given many writers at once, some repeating each other's idempotency keys
    jobs = []
    for n in range(120):
        key = f"k{n % 80}"  # 40 keys are written twice, by different threads
        amount = Decimal("1.25") if n % 80 % 2 == 0 else Decimal("-0.75")
        kind = "purchase" if amount > 0 else "usage"
        jobs.append((kind, amount, key))

    def write(job: tuple[str, Decimal, str]) -> str | None:
        kind, amount, key = job
        try:
            return credits.record(tenant.account_id, kind, amount, idempotency_key=key).id  # type: ignore[arg-type]
        except InsufficientCredits:
            return None

    # When they all write at once
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(write, jobs))

    # Then each key produced one entry, and the balance is exactly the ledger's sum
    entries = _all_entries(tenant.account_id)
    keys = [e.idempotency_key for e in entries]
    assert len(keys) == len(set(keys))
    assert set(keys) == {"signup-grant"} | {
        k for (_, _, k), r in zip(jobs, results, strict=True) if r
    }
    assert credits.balance(tenant.account_id).balance == sum(e.amount for e in entries)
    # And a key's duplicate writer got the same entry back
    by_key: dict[str, set[str]] = {}
    for (_, _, key), result in zip(jobs, results, strict=True):
        if result:
            by_key.setdefault(key, set()).add(result)
    assert all(len(ids) == 1 for ids in by_key.values())


def test_concurrent_debits_cannot_overdraw(tenant: Tenant) -> None:
    # Given 10 credits and 25 callers each wanting 1
    def draw(n: int) -> bool:
        try:
            credits.record(tenant.account_id, "usage", Decimal(-1), idempotency_key=f"d{n}")
        except InsufficientCredits:
            return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        granted = sum(pool.map(draw, range(25)))

    # Then exactly ten were granted and nothing went below zero
    assert granted == 10
    assert credits.balance(tenant.account_id).balance == Decimal(0)
    assert sum(e.amount for e in _all_entries(tenant.account_id)) == Decimal(0)


def test_balance_and_ledger_api(client: TestClient, tenant: Tenant) -> None:
    for n in range(3):
        credits.record(tenant.account_id, "purchase", Decimal(2), idempotency_key=f"p{n}")
    assert client.get("/v1/credits", headers=tenant.headers).json()["balance"] == "16.0000"

    first = client.get("/v1/credits/ledger?limit=2", headers=tenant.headers).json()
    assert [e["idempotency_key"] for e in first["data"]] == ["p2", "p1"]
    assert first["has_more"] is True
    rest = client.get(
        f"/v1/credits/ledger?limit=2&starting_after={first['next_cursor']}", headers=tenant.headers
    ).json()
    assert [e["idempotency_key"] for e in rest["data"]] == ["p0", "signup-grant"]
    assert rest["has_more"] is False and rest["next_cursor"] is None

    grants = client.get("/v1/credits/ledger?kind=grant", headers=tenant.headers).json()["data"]
    assert [e["kind"] for e in grants] == ["grant"]


def test_ledger_is_private_to_its_account(
    client: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    credits.record(tenant.account_id, "purchase", Decimal(100), idempotency_key="p")
    assert client.get("/v1/credits", headers=other_tenant.headers).json()["balance"] == "10.0000"
    theirs = client.get("/v1/credits/ledger", headers=other_tenant.headers).json()["data"]
    assert [e["idempotency_key"] for e in theirs] == ["signup-grant"]
    # A cursor from one account's ledger is refused on another's
    page = client.get("/v1/credits/ledger?limit=1", headers=tenant.headers).json()
    stolen = client.get(
        f"/v1/credits/ledger?starting_after={page['next_cursor']}", headers=other_tenant.headers
    )
    assert stolen.status_code == 422
    assert stolen.json()["error"]["param"] == "starting_after"


def test_bad_paging_input_is_422_not_500(client: TestClient, tenant: Tenant) -> None:
    for query in ("limit=0", "limit=101", "limit=abc", "starting_after=garbage", "kind=bogus"):
        answer = client.get(f"/v1/credits/ledger?{query}", headers=tenant.headers)
        assert answer.status_code == 422, query
        assert answer.json()["error"]["param"] in {"limit", "starting_after", "kind"}
