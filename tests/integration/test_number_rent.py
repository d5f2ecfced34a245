"""Phone number rent against the emulator: charged on purchase and each month, exactly once;
unpaid numbers suspended, resumed by credits, released after their grace."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from talkturo.carrier.base import CarrierError
from talkturo.carrier.factory import set_carrier
from talkturo.domain.common import utcnow
from talkturo.domain.events import WebhookEndpointCreate
from talkturo.domain.numbers import GRACE_DAYS, add_months
from talkturo.local.template import Stack
from talkturo.services import credits, events, numbers
from talkturo.store import accounts as account_store
from tests.conftest import Tenant
from tests.fake_carrier import FakeCarrier
from tests.integration import event_queue, number_queue

pytestmark = pytest.mark.integration

NUMBER = "+14155550140"  # US local: 150 cents a month = 3 credits, no setup
GERMAN = "+493012345670"  # DE local: 200 cents a month + 100 setup = 6 credits at purchase


@pytest.fixture
def carrier(stack: Stack) -> Iterator[FakeCarrier]:
    fake = FakeCarrier()
    set_carrier(fake)
    yield fake
    set_carrier(None)


def _paid(tenant: Tenant) -> Tenant:
    account = account_store.get_account(tenant.account_id)
    account_store.save_account(account.model_copy(update={"plan": "paid"}))
    return tenant


def _balance(tenant: Tenant) -> Decimal:
    return credits.balance(tenant.account_id).balance


def _spend_down_to(tenant: Tenant, left: Decimal) -> None:
    credits.record(
        tenant.account_id,
        "adjustment",
        left - _balance(tenant),
        idempotency_key=f"spend-to-{left}-{utcnow().isoformat()}",
    )


def _active(client: TestClient, stack: Stack, tenant: Tenant, number: str = NUMBER) -> str:
    answer = client.post("/v1/phone-numbers", json={"phone_number": number}, headers=tenant.headers)
    assert answer.status_code == 202, answer.text
    number_queue.drain(stack)
    got = client.get(f"/v1/phone-numbers/{answer.json()['id']}", headers=tenant.headers).json()
    assert got["status"] == "active", got
    return str(got["id"])


def _number(client: TestClient, tenant: Tenant, number_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/phone-numbers/{number_id}", headers=tenant.headers)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _rent_entries(tenant: Tenant, number_id: str) -> list[Any]:
    page = credits.entries(tenant.account_id, limit=100, starting_after=None)
    return [e for e in page.data if e.reference == number_id]


def test_a_paid_number_is_charged_its_setup_and_first_month_once(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    # Given a paid account with the signup grant of 10 credits
    _paid(tenant)
    # When it buys a German number (6 credits with its setup) and the worker runs twice
    number_id = _active(client, stack, tenant, GERMAN)
    number_queue.drain(stack)
    # Then 6 credits were drawn once, under the number's first period
    assert _balance(tenant) == Decimal(4)
    entries = _rent_entries(tenant, number_id)
    assert [(e.kind, e.amount, e.idempotency_key) for e in entries] == [
        ("usage", Decimal(-6), f"number:{number_id}:rent:0")
    ]
    # And the number shows what it costs and when it renews: a month after it was bought
    got = _number(client, tenant, number_id)
    assert got["monthly_credits"] == "4.0000" and got["suspended_reason"] is None
    record = numbers.get_record(tenant.account_id, number_id)
    assert record.rent_anchor_at is not None and got["renews_at"] is not None
    assert record.renews_at == add_months(record.rent_anchor_at, 1)
    assert abs(record.rent_anchor_at - entries[0].created_at) < timedelta(minutes=1)


def test_a_purchase_the_balance_cannot_pay_is_refused_before_anything_is_written(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    _paid(tenant)
    _spend_down_to(tenant, Decimal(2))
    answer = client.post("/v1/phone-numbers", json={"phone_number": NUMBER}, headers=tenant.headers)
    assert answer.status_code == 402, answer.text
    error = answer.json()["error"]
    assert error["code"] == "insufficient_credits" and error["param"] == "phone_number"
    listed = client.get("/v1/phone-numbers", headers=tenant.headers).json()["data"]
    assert listed == [] and carrier.bought == []


def test_credits_gone_before_provisioning_put_the_number_in_error_unbought(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    _paid(tenant)
    answer = client.post("/v1/phone-numbers", json={"phone_number": NUMBER}, headers=tenant.headers)
    assert answer.status_code == 202
    # When the balance is spent before the worker charges the first month
    _spend_down_to(tenant, Decimal(1))
    number_queue.drain(stack)
    # Then the carrier was never asked, the number is in error, nothing was charged
    got = _number(client, tenant, answer.json()["id"])
    assert got["status"] == "error" and "credits" in got["error_message"]
    assert carrier.bought == [] and _balance(tenant) == Decimal(1)


def test_a_carrier_refusal_gives_the_first_month_back(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    _paid(tenant)
    carrier.fail_next = CarrierError("no such number", retryable=False)
    answer = client.post("/v1/phone-numbers", json={"phone_number": NUMBER}, headers=tenant.headers)
    number_queue.drain(stack)
    number_id = answer.json()["id"]
    assert _number(client, tenant, number_id)["status"] == "error"
    # The charge and its return, each once: the balance is whole again
    kinds = sorted((e.kind, e.amount) for e in _rent_entries(tenant, number_id))
    assert kinds == [("adjustment", Decimal(3)), ("usage", Decimal(-3))]
    assert _balance(tenant) == Decimal(10)
    # And the usage report nets them out
    report = client.get("/v1/credits/usage?group_by=number", headers=tenant.headers).json()
    assert report["number_credits"] == "0.0000"


def test_the_monthly_renewal_charges_once_per_month(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    _paid(tenant)
    number_id = _active(client, stack, tenant)
    first_renewal = numbers.get_record(tenant.account_id, number_id).renews_at
    assert first_renewal is not None
    # Before it is due the sweep charges nothing
    assert numbers.sweep_rent(now=first_renewal - timedelta(minutes=1)) == []
    assert _balance(tenant) == Decimal(7)
    # When the sweep runs past the renewal, twice
    later = first_renewal + timedelta(minutes=5)
    assert numbers.sweep_rent(now=later) == [number_id]
    assert numbers.sweep_rent(now=later) == []
    # Then the second month was charged once and the next renewal is a month on
    assert _balance(tenant) == Decimal(4)
    record = numbers.get_record(tenant.account_id, number_id)
    assert record.status == "active" and record.rent_period == 2
    assert record.renews_at == add_months(record.rent_anchor_at, 2)  # type: ignore[arg-type]
    keys = sorted(e.idempotency_key for e in _rent_entries(tenant, number_id))
    assert keys == [f"number:{number_id}:rent:0", f"number:{number_id}:rent:1"]


def test_an_unpaid_renewal_suspends_and_credits_resume_the_number(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    _paid(tenant)
    endpoint = events.create_endpoint(
        tenant.account_id, WebhookEndpointCreate(url="https://hooks.example.com/events")
    ).id
    number_id = _active(client, stack, tenant)
    due = numbers.get_record(tenant.account_id, number_id).renews_at
    assert due is not None
    # Given the balance cannot pay the next month
    _spend_down_to(tenant, Decimal(1))
    # When the renewal comes
    numbers.sweep_rent(now=due + timedelta(minutes=1))
    # Then the number is suspended for the grace period, and nothing was drawn
    got = _number(client, tenant, number_id)
    assert got["status"] == "suspended" and got["suspended_reason"] == "unpaid"
    assert got["release_at"] is not None
    assert _balance(tenant) == Decimal(1) and carrier.released == []
    # And the account was told
    sent = _events(tenant, endpoint, "number.status_changed")
    assert [(e["data"]["previous_status"], e["data"]["status"]) for e in sent][-1] == (
        "active",
        "suspended",
    )
    # And it cannot be assigned meanwhile
    assistant = client.post(
        "/v1/assistants", json={"template": "custom"}, headers=tenant.headers
    ).json()["id"]
    refused = client.post(
        f"/v1/phone-numbers/{number_id}/assign",
        json={"assistant_id": assistant},
        headers=tenant.headers,
    )
    assert refused.status_code == 409
    # When credits are bought
    credits.record(tenant.account_id, "purchase", Decimal(20), idempotency_key="pi_rent")
    # Then the month is charged and the number is active again, its months counted from now
    got = _number(client, tenant, number_id)
    assert got["status"] == "active" and got["suspended_reason"] is None
    assert got["release_at"] is None
    assert _balance(tenant) == Decimal(18)
    record = numbers.get_record(tenant.account_id, number_id)
    assert record.rent_anchor_at is not None
    assert abs(record.rent_anchor_at - utcnow()) < timedelta(minutes=1)
    assert record.renews_at == add_months(record.rent_anchor_at, 1)
    sent = _events(tenant, endpoint, "number.status_changed")
    assert (sent[-1]["data"]["previous_status"], sent[-1]["data"]["status"]) == (
        "suspended",
        "active",
    )
    # And a second purchase charges nothing more
    credits.record(tenant.account_id, "purchase", Decimal(2), idempotency_key="pi_more")
    assert _balance(tenant) == Decimal(20)


def test_an_unpaid_number_is_released_when_its_grace_is_over(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    _paid(tenant)
    number_id = _active(client, stack, tenant)
    due = numbers.get_record(tenant.account_id, number_id).renews_at
    assert due is not None
    _spend_down_to(tenant, Decimal(0))
    numbers.sweep_rent(now=due + timedelta(minutes=1))
    assert _number(client, tenant, number_id)["status"] == "suspended"
    # A day before the grace ends it is kept
    numbers.sweep_rent(now=due + timedelta(days=GRACE_DAYS - 1))
    assert _number(client, tenant, number_id)["status"] == "suspended"
    # After it, it is given back to the carrier
    numbers.sweep_rent(now=due + timedelta(days=GRACE_DAYS, minutes=2))
    assert _number(client, tenant, number_id)["status"] == "released"
    assert len(carrier.released) == 1
    assert _balance(tenant) == Decimal(0)


def test_a_trial_costs_nothing_and_pays_rent_once_credits_are_bought(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    # Given a free account's trial number (German: its setup is waived too)
    number_id = _active(client, stack, tenant, GERMAN)
    assert _balance(tenant) == Decimal(10)
    assert _number(client, tenant, number_id)["renews_at"] is None
    # When the account buys credits
    credits.record(tenant.account_id, "purchase", Decimal(20), idempotency_key="pi_trial")
    # Then the number is kept and its first month (no setup) is charged
    got = _number(client, tenant, number_id)
    assert got["trial"] is False and got["status"] == "active"
    assert got["renews_at"] is not None
    assert _balance(tenant) == Decimal(26)
    assert [e.amount for e in _rent_entries(tenant, number_id)] == [Decimal(-4)]


def test_the_renewal_function_handler(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    import importlib.util

    from talkturo.local.template import PROJECT_ROOT

    path = PROJECT_ROOT / "functions" / "number_renewal" / "app.py"
    spec = importlib.util.spec_from_file_location("number_renewal_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _paid(tenant)
    _active(client, stack, tenant)
    answer = module.handler({"source": "aws.events"}, number_queue.LambdaContext())
    assert answer == {"renewed": []}


def _events(tenant: Tenant, endpoint_id: str, kind: str) -> list[dict[str, Any]]:
    return event_queue.emitted(tenant.account_id, endpoint_id, kind)
