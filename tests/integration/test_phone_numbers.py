"""Phone numbers against the emulator: buy → provision → assign → release, trials, isolation."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from fastapi.testclient import TestClient

from talkturo.carrier.base import CarrierError
from talkturo.carrier.factory import set_carrier
from talkturo.domain.common import utcnow
from talkturo.local.template import Stack
from talkturo.services import numbers
from talkturo.store import accounts as account_store
from talkturo.store import numbers as number_store
from tests.conftest import Tenant
from tests.fake_carrier import FakeCarrier
from tests.integration import number_queue

NUMBER = "+14155550140"
OTHER_NUMBER = "+14155550141"


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


def _buy(
    client: TestClient, tenant: Tenant, number: str = NUMBER, **headers: str
) -> dict[str, Any]:
    answer = client.post(
        "/v1/phone-numbers",
        json={"phone_number": number},
        headers={**tenant.headers, **headers},
    )
    assert answer.status_code == 202, answer.text
    return dict(answer.json())


def _active(client: TestClient, stack: Stack, tenant: Tenant, number: str = NUMBER) -> str:
    bought = _buy(client, tenant, number)
    number_queue.drain(stack)
    got = client.get(f"/v1/phone-numbers/{bought['id']}", headers=tenant.headers).json()
    assert got["status"] == "active", got
    return str(bought["id"])


def _assistant(client: TestClient, tenant: Tenant) -> str:
    answer = client.post("/v1/assistants", json={"template": "custom"}, headers=tenant.headers)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def _numbers_of(client: TestClient, tenant: Tenant, assistant_id: str) -> list[str]:
    got = client.get(f"/v1/assistants/{assistant_id}", headers=tenant.headers).json()
    return list(got["phone_number_ids"])


def test_search_shows_prices(client: TestClient, tenant: Tenant, carrier: FakeCarrier) -> None:
    answer = client.get(
        "/v1/phone-numbers/available?country=US&area_code=415&limit=2", headers=tenant.headers
    )
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert [n["phone_number"] for n in data] == ["+14155550140", "+14155550141"]
    assert all(n["monthly_price_cents"] == 150 and n["setup_price_cents"] == 0 for n in data)
    assert carrier.searches[0].area_code == "415"
    toll_free = client.get(
        "/v1/phone-numbers/available?country=US&type=toll_free", headers=tenant.headers
    ).json()["data"]
    assert toll_free[0]["monthly_price_cents"] == 250
    bad = client.get("/v1/phone-numbers/available?country=FR", headers=tenant.headers)
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "country"


def test_buy_answers_purchasing_then_the_worker_activates(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    # Given a paid account buys a number
    _paid(tenant)
    bought = _buy(client, tenant)
    # Then it answers at once, purchasing, before the carrier was asked
    assert bought["status"] == "purchasing" and bought["id"].startswith("pn_")
    assert bought["trial"] is False and bought["expires_at"] is None
    assert bought["country"] == "US" and bought["type"] == "local"
    assert bought["friendly_name"] == "+1 415-555-0140"
    assert carrier.bought == []
    # When the provisioning worker runs
    handled = number_queue.drain(stack)
    assert handled == [{"account_id": tenant.account_id, "number_id": bought["id"]}]
    # Then the number is active, bought with our webhooks
    got = client.get(f"/v1/phone-numbers/{bought['id']}", headers=tenant.headers).json()
    assert got["status"] == "active" and got["error_message"] is None
    assert "carrier_sid" not in got
    assert carrier.bought == [
        (NUMBER, "http://127.0.0.1:8000/carrier/voice", "http://127.0.0.1:8000/carrier/status")
    ]
    # And the global routing item names this account's number
    assert number_store.holder(NUMBER) == (tenant.account_id, bought["id"])


def test_a_redelivered_message_buys_once(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    bought = _buy(client, tenant)
    body = number_queue.receive(stack)[0][0]
    assert number_queue.invoke(stack, [body]) == {"batchItemFailures": []}
    assert number_queue.invoke(stack, [body]) == {"batchItemFailures": []}
    assert len(carrier.bought) == 1
    got = client.get(f"/v1/phone-numbers/{bought['id']}", headers=tenant.headers).json()
    assert got["status"] == "active"


def test_provisioning_failure_puts_the_number_in_error(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    # Given the carrier refuses the purchase
    carrier.fail_next = CarrierError("Number +14155550140 is not available", carrier_code=21422)
    bought = _buy(client, tenant)
    number_queue.drain(stack)
    # Then the number is in error with the carrier's message
    got = client.get(f"/v1/phone-numbers/{bought['id']}", headers=tenant.headers).json()
    assert got["status"] == "error"
    assert got["error_message"] == "Number +14155550140 is not available"
    # And it holds nothing: the number can be bought again, the trial slot is free
    assert number_store.holder(NUMBER) is None
    again = _buy(client, tenant)
    assert again["status"] == "purchasing" and again["trial"] is True


def test_a_retryable_carrier_error_leaves_the_message_for_later(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    carrier.fail_next = CarrierError("carrier busy", retryable=True)
    bought = _buy(client, tenant)
    body = number_queue.receive(stack)[0][0]
    # The whole (one-message) batch fails, so Lambda gives the message back later
    with pytest.raises(BatchProcessingError):
        number_queue.invoke(stack, [body])
    got = client.get(f"/v1/phone-numbers/{bought['id']}", headers=tenant.headers).json()
    assert got["status"] == "purchasing"
    # The next delivery succeeds
    assert number_queue.invoke(stack, [body]) == {"batchItemFailures": []}
    got = client.get(f"/v1/phone-numbers/{bought['id']}", headers=tenant.headers).json()
    assert got["status"] == "active"


def test_a_number_is_held_by_one_account(
    client: TestClient, stack: Stack, tenant: Tenant, other_tenant: Tenant, carrier: FakeCarrier
) -> None:
    _buy(client, tenant)
    answer = client.post(
        "/v1/phone-numbers", json={"phone_number": NUMBER}, headers=other_tenant.headers
    )
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "number_not_available"
    # The refusal says nothing about who holds it
    assert tenant.account_id not in answer.text


def test_buy_is_idempotent_with_a_key(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    first = _buy(client, tenant, **{"Idempotency-Key": "buy-1"})
    second = _buy(client, tenant, **{"Idempotency-Key": "buy-1"})
    assert first == second
    assert len(number_queue.receive(stack)) == 1


def test_buy_refuses_numbers_outside_the_served_countries(
    client: TestClient, tenant: Tenant, carrier: FakeCarrier
) -> None:
    answer = client.post(
        "/v1/phone-numbers", json={"phone_number": "+33142685300"}, headers=tenant.headers
    )
    assert answer.status_code == 422 and answer.json()["error"]["param"] == "phone_number"
    answer = client.post(
        "/v1/phone-numbers", json={"phone_number": "0142685300"}, headers=tenant.headers
    )
    assert answer.status_code == 422


def test_list_filters_and_rename(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    _paid(tenant)
    first = _active(client, stack, tenant)
    carrier.fail_next = CarrierError("no")
    second = _buy(client, tenant, OTHER_NUMBER)["id"]
    number_queue.drain(stack)
    listed = client.get("/v1/phone-numbers?limit=1", headers=tenant.headers).json()
    assert [n["id"] for n in listed["data"]] == [second] and listed["has_more"]
    rest = client.get(
        f"/v1/phone-numbers?limit=1&starting_after={listed['next_cursor']}", headers=tenant.headers
    ).json()
    assert [n["id"] for n in rest["data"]] == [first] and not rest["has_more"]
    active = client.get("/v1/phone-numbers?status=active", headers=tenant.headers).json()
    assert [n["id"] for n in active["data"]] == [first]
    renamed = client.patch(
        f"/v1/phone-numbers/{first}", json={"friendly_name": "Sales line"}, headers=tenant.headers
    )
    assert renamed.status_code == 200 and renamed.json()["friendly_name"] == "Sales line"
    bad = client.patch(f"/v1/phone-numbers/{first}", json={"status": "x"}, headers=tenant.headers)
    assert bad.status_code == 422


def test_assign_unassign_and_filter_by_assistant(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    number_id = _active(client, stack, tenant)
    assistant = _assistant(client, tenant)
    answer = client.post(
        f"/v1/phone-numbers/{number_id}/assign",
        json={"assistant_id": assistant},
        headers=tenant.headers,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["assistant_id"] == assistant
    assert _numbers_of(client, tenant, assistant) == [number_id]
    listed = client.get(f"/v1/phone-numbers?assistant_id={assistant}", headers=tenant.headers)
    assert [n["id"] for n in listed.json()["data"]] == [number_id]
    # Assigning again to the same assistant changes nothing
    again = client.post(
        f"/v1/phone-numbers/{number_id}/assign",
        json={"assistant_id": assistant},
        headers=tenant.headers,
    )
    assert again.status_code == 200
    # The assistant cannot be deleted while it holds the number
    assert client.delete(f"/v1/assistants/{assistant}", headers=tenant.headers).status_code == 409
    # Unassign keeps the assistant's set consistent, and is idempotent
    for _ in range(2):
        gone = client.post(f"/v1/phone-numbers/{number_id}/unassign", headers=tenant.headers)
        assert gone.status_code == 200 and gone.json()["assistant_id"] is None
    assert _numbers_of(client, tenant, assistant) == []


def test_reassign_moves_the_number_between_assistants(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    number_id = _active(client, stack, tenant)
    first, second = _assistant(client, tenant), _assistant(client, tenant)
    url = f"/v1/phone-numbers/{number_id}/assign"
    assert client.post(url, json={"assistant_id": first}, headers=tenant.headers).status_code == 200
    refused = client.post(url, json={"assistant_id": second}, headers=tenant.headers)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "number_already_assigned"
    moved = client.post(
        url, json={"assistant_id": second, "reassign": True}, headers=tenant.headers
    )
    assert moved.status_code == 200 and moved.json()["assistant_id"] == second
    assert _numbers_of(client, tenant, first) == []
    assert _numbers_of(client, tenant, second) == [number_id]


def test_two_assistants_race_for_one_number(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    number_id = _active(client, stack, tenant)
    racers = [_assistant(client, tenant) for _ in range(2)]
    outcomes: dict[str, Any] = {}
    start = threading.Barrier(len(racers))

    def race(assistant_id: str) -> None:
        start.wait()
        try:
            outcomes[assistant_id] = numbers.assign(tenant.account_id, number_id, assistant_id)
        except Exception as error:
            outcomes[assistant_id] = error

    threads = [threading.Thread(target=race, args=(a,)) for a in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [a for a, o in outcomes.items() if not isinstance(o, Exception)]
    losers = [o for o in outcomes.values() if isinstance(o, Exception)]
    assert len(winners) == 1, outcomes
    assert len(losers) == 1 and getattr(losers[0], "status", None) == 409, losers
    # Exactly the winner holds it, on both sides
    got = client.get(f"/v1/phone-numbers/{number_id}", headers=tenant.headers).json()
    assert got["assistant_id"] == winners[0]
    assert [_numbers_of(client, tenant, a) for a in racers].count([number_id]) == 1


def test_only_active_numbers_can_be_assigned(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    assistant = _assistant(client, tenant)
    bought = _buy(client, tenant)
    answer = client.post(
        f"/v1/phone-numbers/{bought['id']}/assign",
        json={"assistant_id": assistant},
        headers=tenant.headers,
    )
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "number_not_active"
    assert "provisioned" in answer.json()["error"]["message"]
    assert _numbers_of(client, tenant, assistant) == []


def test_assign_to_a_missing_assistant_is_404(
    client: TestClient, stack: Stack, tenant: Tenant, other_tenant: Tenant, carrier: FakeCarrier
) -> None:
    number_id = _active(client, stack, tenant)
    foreign = _assistant(client, other_tenant)
    for assistant_id in (foreign, "asst_01J00000000000000000000000", "nope"):
        answer = client.post(
            f"/v1/phone-numbers/{number_id}/assign",
            json={"assistant_id": assistant_id},
            headers=tenant.headers,
        )
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["param"] == "assistant_id"
    got = client.get(f"/v1/phone-numbers/{number_id}", headers=tenant.headers).json()
    assert got["assistant_id"] is None
    assert _numbers_of(client, other_tenant, foreign) == []


def test_suspend_and_resume(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    carrier: FakeCarrier,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from talkturo.api import deps

    monkeypatch.setenv("TALKTURO_ADMIN_SECRET", "admin-secret")
    from talkturo import config

    config.get_settings.cache_clear()
    deps._admin_secret.cache_clear()
    admin = {"Authorization": "Bearer admin-secret"}
    number_id = _active(client, stack, tenant)
    assistant = _assistant(client, tenant)
    suspended = client.post(f"/v1/admin/phone-numbers/{number_id}/suspend", headers=admin)
    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
    refused = client.post(
        f"/v1/phone-numbers/{number_id}/assign",
        json={"assistant_id": assistant},
        headers=tenant.headers,
    )
    assert refused.status_code == 409
    resumed = client.post(f"/v1/admin/phone-numbers/{number_id}/resume", headers=admin)
    assert resumed.status_code == 200 and resumed.json()["status"] == "active"
    missing = client.post(
        "/v1/admin/phone-numbers/pn_01J00000000000000000000000/suspend", headers=admin
    )
    assert missing.status_code == 404
    deps._admin_secret.cache_clear()


def test_release(client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier) -> None:
    # Given an active number assigned to an assistant
    number_id = _active(client, stack, tenant)
    assistant = _assistant(client, tenant)
    client.post(
        f"/v1/phone-numbers/{number_id}/assign",
        json={"assistant_id": assistant},
        headers=tenant.headers,
    )
    # When it is released, twice
    for _ in range(2):
        answer = client.delete(f"/v1/phone-numbers/{number_id}", headers=tenant.headers)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "released" and answer.json()["assistant_id"] is None
    # Then the carrier was asked once, the assistant lost it, the routing item is gone
    assert len(carrier.released) == 1
    assert _numbers_of(client, tenant, assistant) == []
    assert number_store.holder(NUMBER) is None
    # And it can no longer be assigned
    answer = client.post(
        f"/v1/phone-numbers/{number_id}/assign",
        json={"assistant_id": assistant},
        headers=tenant.headers,
    )
    assert answer.status_code == 409


def test_free_plan_gets_one_trial_number(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    # Given a free account's first number is a trial, expiring in five days
    first = _buy(client, tenant)
    assert first["trial"] is True
    assert first["expires_at"] is not None
    # When it buys a second
    answer = client.post(
        "/v1/phone-numbers", json={"phone_number": OTHER_NUMBER}, headers=tenant.headers
    )
    # Then it is refused, saying how to lift the limit
    assert answer.status_code == 402, answer.text
    error = answer.json()["error"]
    assert error["code"] == "trial_number_limit" and "credits" in error["message"]
    # And after the trial number is released, another may be bought
    number_queue.drain(stack)
    client.delete(f"/v1/phone-numbers/{first['id']}", headers=tenant.headers)
    assert _buy(client, tenant, OTHER_NUMBER)["trial"] is True


def test_lift_trial_expiry(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    number_id = _active(client, stack, tenant)
    # When the account buys credits (billing lifts the expiry and the plan becomes paid)
    assert numbers.lift_trial_expiry(tenant.account_id) == 1
    _paid(tenant)
    got = client.get(f"/v1/phone-numbers/{number_id}", headers=tenant.headers).json()
    assert got["trial"] is False and got["expires_at"] is None
    # Then the sweep never releases it, and buying more is normal
    assert numbers.sweep_expired(now=utcnow() + timedelta(days=6)) == []
    assert _buy(client, tenant, OTHER_NUMBER)["trial"] is False
    assert numbers.lift_trial_expiry(tenant.account_id) == 0


def test_buying_credits_makes_the_account_paid_and_keeps_its_trial_number(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    from decimal import Decimal

    from talkturo.services import credits

    # Given a free account with its trial number
    number_id = _active(client, stack, tenant)
    # When it buys credits (the purchase entry billing writes; repeated, as a webhook retry)
    for _ in range(2):
        credits.record(tenant.account_id, "purchase", Decimal(20), idempotency_key="cs_1")
    # Then the account is on the paid plan and the number no longer expires
    assert client.get("/v1/account", headers=tenant.headers).json()["plan"] == "paid"
    got = client.get(f"/v1/phone-numbers/{number_id}", headers=tenant.headers).json()
    assert got["trial"] is False and got["expires_at"] is None
    assert numbers.sweep_expired(now=utcnow() + timedelta(days=6)) == []


def test_expiry_sweep_releases_only_expired_trials(
    client: TestClient, stack: Stack, tenant: Tenant, other_tenant: Tenant, carrier: FakeCarrier
) -> None:
    # Given a trial number (tenant) and a paid one (other tenant)
    trial = _active(client, stack, tenant)
    _paid(other_tenant)
    paid = _active(client, stack, other_tenant, OTHER_NUMBER)
    # When the sweep runs before five days have passed
    assert numbers.sweep_expired(now=utcnow() + timedelta(days=4)) == []
    # And after
    assert numbers.sweep_expired(now=utcnow() + timedelta(days=5, minutes=1)) == [trial]
    # Then only the trial is released, once
    assert client.get(f"/v1/phone-numbers/{trial}", headers=tenant.headers).json()["status"] == (
        "released"
    )
    assert (
        client.get(f"/v1/phone-numbers/{paid}", headers=other_tenant.headers).json()["status"]
        == "active"
    )
    assert numbers.sweep_expired(now=utcnow() + timedelta(days=6)) == []
    assert len(carrier.released) == 1


def test_expiry_function_handler(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    import importlib.util

    from talkturo.local.template import PROJECT_ROOT

    path = PROJECT_ROOT / "functions" / "number_expiry" / "app.py"
    spec = importlib.util.spec_from_file_location("number_expiry_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _active(client, stack, tenant)
    answer = module.handler({"source": "aws.events"}, number_queue.LambdaContext())
    assert answer == {"released": []}


def test_another_account_sees_nothing(
    client: TestClient, stack: Stack, tenant: Tenant, other_tenant: Tenant, carrier: FakeCarrier
) -> None:
    number_id = _active(client, stack, tenant)
    assistant = _assistant(client, other_tenant)
    for method, path, body in (
        ("GET", f"/v1/phone-numbers/{number_id}", None),
        ("PATCH", f"/v1/phone-numbers/{number_id}", {"friendly_name": "mine"}),
        ("POST", f"/v1/phone-numbers/{number_id}/assign", {"assistant_id": assistant}),
        ("POST", f"/v1/phone-numbers/{number_id}/unassign", None),
        ("DELETE", f"/v1/phone-numbers/{number_id}", None),
    ):
        answer = client.request(method, path, json=body, headers=other_tenant.headers)
        assert answer.status_code == 404, (method, path, answer.text)
    listed = client.get("/v1/phone-numbers", headers=other_tenant.headers).json()
    assert listed["data"] == []
    assert carrier.released == []
    assert _numbers_of(client, other_tenant, assistant) == []
    # Buying the same number does not reveal who holds it
    answer = client.post(
        "/v1/phone-numbers", json={"phone_number": NUMBER}, headers=other_tenant.headers
    )
    assert answer.status_code == 409 and number_id not in answer.text
    assert tenant.account_id not in answer.text
