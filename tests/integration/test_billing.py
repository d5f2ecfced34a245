"""Buying credits with Stripe, end to end on the emulator: the API starts a Checkout, the Stripe
simulator takes the payment and sends its webhooks (signed as Stripe signs them) to the
platform's webhook app, the billing worker applies them. The stripe SDK is the client
throughout, pointed at the simulator.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import httpx
import pytest
from fastapi.testclient import TestClient

from talkturo.billing.gateway import PaymentFailed
from talkturo.domain.billing import purchase_of
from talkturo.local.template import Stack
from talkturo.services import billing as billing_service
from talkturo.services import credits
from talkturo.store import billing as billing_store
from talkturo.webhooks import billing as webhook
from tests.conftest import Tenant
from tests.fake_carrier import FakeCarrier
from tests.integration import billing_queue, calls_setup
from tests.integration.billing_setup import Billing, billing, signed

VISA = "4242424242424242"


@pytest.fixture
def stripe_sim(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Billing]:
    with billing(monkeypatch) as wired:
        yield wired


@pytest.fixture
def quiet_sim(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Billing]:
    """The simulator with no webhook endpoint: the test hands events over itself."""
    with billing(monkeypatch, endpoint=False) as wired:
        yield wired


def _checkout(client: TestClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    answer = client.post("/v1/credits/checkout", json=body, headers=tenant.headers)
    assert answer.status_code == 201, answer.text
    result: dict[str, Any] = answer.json()
    return result


def _buy(client: TestClient, tenant: Tenant, wired: Billing, package: str, **body: Any) -> str:
    """Checkout and pay with the test card that succeeds; the PaymentIntent's id."""
    session = _checkout(client, tenant, package=package, **body)
    assert wired.sim.pay(session["id"], VISA)["result"] == "paid"
    intent = billing_service.get_gateway().checkout_session_payment(session["id"])
    assert intent is not None
    return intent


def _ledger(client: TestClient, tenant: Tenant) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = client.get(
        "/v1/credits/ledger?limit=100", headers=tenant.headers
    ).json()["data"]
    return entries


def _stripe_entries(client: TestClient, tenant: Tenant) -> list[tuple[str, str]]:
    return sorted(
        (e["kind"], e["amount"])
        for e in _ledger(client, tenant)
        if e["idempotency_key"].startswith("stripe:")
    )


def _balance(tenant: Tenant) -> Decimal:
    return credits.balance(tenant.account_id).balance


def _events_of(wired: Billing, intent_id: str, *types: str) -> list[dict[str, Any]]:
    """The simulator's events about one payment (its intent, charge or session), oldest first."""
    with wired.sim.state.lock:
        events = list(wired.sim.state.objects["event"].values())
    found = []
    for event in events:
        obj = event["data"]["object"]
        if intent_id in (obj.get("id"), obj.get("payment_intent")) and event["type"] in types:
            found.append(event)
    return found


def _deliver(wired: Billing, event: dict[str, Any]) -> int:
    body, header = signed(event, wired.sim.webhook_secret)
    return webhook.handle({"stripe-signature": header}, body).status


def _queued(stack: Stack) -> int:
    sqs = boto3.client("sqs", region_name="us-east-1")
    attributes = sqs.get_queue_attributes(
        QueueUrl=stack.physical["BillingEventQueue"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


# ----------------------------------------------------------------------------- packages, checkout
def test_the_packages_are_the_seeds(client: TestClient, tenant: Tenant) -> None:
    answer = client.get("/v1/credits/packages", headers=tenant.headers).json()
    assert [(p["amount_cents"], p["credits"], p["bonus_credits"]) for p in answer["data"]] == [
        (1000, "20.0000", "0.0000"),
        (5000, "105.0000", "5.0000"),
        (10000, "220.0000", "20.0000"),
        (50000, "1150.0000", "150.0000"),
    ]
    assert answer["custom"] == {
        "min_cents": 1000,
        "max_cents": 500000,
        "credits_per_dollar": "2.0000",
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"package": "pkg_7"}, "package"),
        ({}, "amount_cents"),
        ({"package": "custom", "amount_cents": 999}, "amount_cents"),
        ({"amount_cents": 500001}, "amount_cents"),
        ({"package": "pkg_10", "amount_cents": 2000}, "amount_cents"),
        ({"package": "pkg_10", "success_url": "javascript:alert(1)"}, "success_url"),
    ],
)
def test_a_checkout_names_what_is_wrong(
    client: TestClient, tenant: Tenant, stripe_sim: Billing, body: dict[str, Any], param: str
) -> None:
    answer = client.post("/v1/credits/checkout", json=body, headers=tenant.headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["param"] == param
    # Nothing was asked of Stripe
    assert stripe_sim.sim.state.objects["checkout.session"] == {}


def test_a_checkout_is_a_stripe_session_with_our_ids_on_the_payment(
    client: TestClient, tenant: Tenant, stripe_sim: Billing
) -> None:
    # When the account starts two checkouts
    first = _checkout(client, tenant, package="pkg_50", save_card=True)
    second = _checkout(client, tenant, amount_cents=1234)
    # Then both are Checkout Sessions in payment mode for one customer, created once
    state = stripe_sim.sim.state
    customers = list(state.objects["customer"].values())
    assert len(customers) == 1
    assert customers[0]["metadata"] == {"talkturo_account": tenant.account_id}
    sessions = state.objects["checkout.session"]
    one, two = sessions[first["id"]], sessions[second["id"]]
    assert one["mode"] == two["mode"] == "payment"
    assert one["customer"] == two["customer"] == customers[0]["id"]
    assert one["amount_total"] == 5000 and two["amount_total"] == 1234
    assert first["url"] == one["url"] and first["credits"] == "105.0000"
    assert second["credits"] == "24.6800" and second["package"] == "custom"
    # Our ids travel on the PaymentIntent (not only the session); the card is saved when asked
    assert one["_payment_intent_data"]["metadata"] == {
        "talkturo_account": tenant.account_id,
        "talkturo_package": "pkg_50",
        "talkturo_credits": "105.0000",
        "talkturo_bonus": "5.0000",
    }
    assert one["_payment_intent_data"]["setup_future_usage"] == "off_session"
    assert two["_payment_intent_data"]["setup_future_usage"] is None
    assert one["success_url"].endswith(
        "/billing/return?result=success&session_id={CHECKOUT_SESSION_ID}"
    )
    # And the same request again (a double click) is the same session: a deterministic key
    assert _checkout(client, tenant, package="pkg_50", save_card=True)["id"] == first["id"]
    # No credits yet: they come only from the webhook
    assert _stripe_entries(client, tenant) == []


def test_a_customer_gone_at_stripe_is_replaced_and_its_payments_still_count(
    client: TestClient, stack: Stack, tenant: Tenant, stripe_sim: Billing
) -> None:
    # Given a purchase with a card saved, then the account's customer deleted at Stripe
    # (its webhooks are stored and queued, not applied yet)
    _buy(client, tenant, stripe_sim, "pkg_10", save_card=True)
    first_customer = billing_store.customer_of(tenant.account_id)
    assert first_customer is not None
    stripe_sim.client.v1.customers.delete(first_customer)
    assert billing_service.saved_card(tenant.account_id) is None  # nothing left to charge
    # When the account starts a checkout: a new customer is made and kept, no 502
    session = _checkout(client, tenant, package="pkg_50")
    customer = billing_store.customer_of(tenant.account_id)
    assert customer is not None and customer != first_customer
    state = stripe_sim.sim.state
    assert state.objects["checkout.session"][session["id"]]["customer"] == customer
    assert list(state.objects["customer"]) == [customer]
    # And once (a second checkout, and a second replacement of the same gone one, find it)
    assert _checkout(client, tenant, package="pkg_100")["id"] != session["id"]
    assert billing_service.ensure_customer(tenant.account_id, missing=first_customer) == customer
    assert billing_store.customer_of(tenant.account_id) == customer
    assert len(state.objects["customer"]) == 1
    # When that one is gone too and eight checkouts find it so at once: one replacement
    stripe_sim.client.v1.customers.delete(customer)
    start = threading.Barrier(8)
    answers: list[str] = []

    def replace() -> None:
        start.wait()
        answers.append(billing_service.ensure_customer(tenant.account_id, missing=customer))

    threads = [threading.Thread(target=replace) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (third,) = set(answers)
    assert billing_store.customer_of(tenant.account_id) == third
    assert list(state.objects["customer"]) == [third]
    assert billing_store.customers_of(tenant.account_id) == {first_customer, customer, third}
    # Then the payments made with the gone customers are still the account's (applied after
    # their replacement, granted once each)
    assert stripe_sim.sim.pay(session["id"], VISA)["result"] == "paid"
    stripe_sim.settle()
    billing_queue.drain(stack)
    assert _stripe_entries(client, tenant) == [
        ("bonus", "5.0000"),
        ("purchase", "100.0000"),
        ("purchase", "20.0000"),
    ]


# ----------------------------------------------------------------------------- granting once
def test_a_package_bought_is_credited_once_although_every_event_came_three_times(
    client: TestClient, stack: Stack, tenant: Tenant, stripe_sim: Billing
) -> None:
    # Given a simulator sending every event three times, each change's events in reverse order
    stripe_sim.sim.switches.update(copies=3, reorder=True)
    assert client.get("/v1/account", headers=tenant.headers).json()["plan"] == "free"
    # When the account buys the $50 package and every event is applied
    intent = _buy(client, tenant, stripe_sim, "pkg_50")
    stripe_sim.settle()
    types = [d["type"] for d in stripe_sim.sim.deliveries()]
    for granting in (
        "checkout.session.completed",
        "payment_intent.succeeded",
    ):
        assert types.count(granting) == 3
    assert all(d["delivered"] for d in stripe_sim.sim.deliveries())
    billing_queue.drain(stack)
    # Then the ledger has one purchase and one bonus entry, and the balance moved once
    assert _stripe_entries(client, tenant) == [("bonus", "5.0000"), ("purchase", "100.0000")]
    assert _balance(tenant) == Decimal(10 + 105)
    # The account became paid, and the payment is listed
    assert client.get("/v1/account", headers=tenant.headers).json()["plan"] == "paid"
    payments = client.get("/v1/credits/payments", headers=tenant.headers).json()["data"]
    assert [(p["id"], p["amount_cents"], p["credits"]) for p in payments] == [
        (intent, 5000, "105.0000")
    ]
    # And applying every stored event again changes nothing
    for event_id in [e["id"] for e in stripe_sim.sim.state.objects["event"].values()]:
        if billing_store.get_event(event_id) is not None:
            billing_service.apply_event(event_id)
    assert _balance(tenant) == Decimal(115)


def test_the_same_event_twenty_times_at_once_and_all_three_success_events_grant_once(
    client: TestClient, stack: Stack, tenant: Tenant, quiet_sim: Billing
) -> None:
    intent = _buy(client, tenant, quiet_sim, "pkg_100")
    (succeeded,) = _events_of(quiet_sim, intent, "payment_intent.succeeded")
    # When the same event arrives 20 times at once
    answers: list[int] = []
    start = threading.Barrier(20)

    def arrive() -> None:
        start.wait()
        answers.append(_deliver(quiet_sim, succeeded))

    threads = [threading.Thread(target=arrive) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * 20
    # And the session's completion arrives too, then everything is applied
    (completed,) = _events_of(quiet_sim, intent, "checkout.session.completed")
    assert _deliver(quiet_sim, completed) == 200
    billing_queue.drain(stack)
    # Then the payment was credited once
    assert _stripe_entries(client, tenant) == [("bonus", "20.0000"), ("purchase", "200.0000")]
    assert _balance(tenant) == Decimal(230)


def test_a_delayed_payment_is_credited_when_it_succeeds_not_when_the_session_completes(
    client: TestClient, stack: Stack, tenant: Tenant, quiet_sim: Billing
) -> None:
    session = _checkout(client, tenant, package="pkg_10")
    assert quiet_sim.sim.pay(session["id"], "delayed")["result"] == "processing"
    intent = billing_service.get_gateway().checkout_session_payment(session["id"])
    assert intent is not None
    (completed,) = _events_of(quiet_sim, intent, "checkout.session.completed")
    assert _deliver(quiet_sim, completed) == 200
    billing_queue.drain(stack)
    assert _stripe_entries(client, tenant) == []
    # When the bank debit succeeds (the simulator settles it a moment later)
    deadline = time.monotonic() + 10
    while not _events_of(quiet_sim, intent, "checkout.session.async_payment_succeeded"):
        assert time.monotonic() < deadline, "the delayed payment never succeeded"
        time.sleep(0.05)
    (async_ok,) = _events_of(quiet_sim, intent, "checkout.session.async_payment_succeeded")
    assert _deliver(quiet_sim, async_ok) == 200
    billing_queue.drain(stack)
    assert _stripe_entries(client, tenant) == [("purchase", "20.0000")]


def test_a_payment_whose_amount_does_not_match_its_package_grants_nothing(
    client: TestClient, stack: Stack, tenant: Tenant, quiet_sim: Billing
) -> None:
    # A payment made outside our checkout: $10 that claims the $50 package
    metadata = purchase_of("pkg_50", None).metadata(tenant.account_id)
    intent = quiet_sim.client.v1.payment_intents.create(
        params={
            "amount": 1000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "metadata": metadata,
        }
    )
    (succeeded,) = _events_of(quiet_sim, intent.id, "payment_intent.succeeded")
    assert _deliver(quiet_sim, succeeded) == 200
    billing_queue.drain(stack)
    assert _stripe_entries(client, tenant) == []
    assert billing_store.get_event(succeeded["id"]).outcome.startswith("not granted")  # type: ignore[union-attr]
    report = billing_service.reconcile(_since())
    assert [(d.kind, d.stripe_id) for d in report.differences] == [("amount_mismatch", intent.id)]


# ----------------------------------------------------------------------------- signatures
def _event_body() -> dict[str, Any]:
    return {
        "id": "evt_1SignatureCheck",
        "object": "event",
        "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_1SignatureCheck", "object": "payment_intent"}},
    }


def _tampered(secret: str) -> tuple[bytes, str]:
    body, header = signed(_event_body(), secret)
    return body.replace(b"pi_1Signature", b"pi_2Signature"), header


def _malformed(secret: str) -> tuple[bytes, str]:
    body, header = signed(_event_body(), secret)
    return body, header.replace("t=", "time=")


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(_tampered, id="tampered"),
        pytest.param(lambda s: signed(_event_body(), s, int(time.time()) - 301), id="stale"),
        pytest.param(lambda s: signed(_event_body(), s, int(time.time()) + 600), id="future"),
        pytest.param(lambda s: signed(_event_body(), "whsec_someone_else"), id="wrong-secret"),
        pytest.param(_malformed, id="malformed-header"),
        pytest.param(lambda s: (signed(_event_body(), s)[0], ""), id="no-header"),
        pytest.param(
            lambda s: (signed(_event_body(), s)[0], "t=1,v0=" + "0" * 64), id="other-scheme"
        ),
    ],
)
def test_a_webhook_that_does_not_verify_is_400_and_nothing_is_written(
    stack: Stack, quiet_sim: Billing, make: Any
) -> None:
    body, header = make(quiet_sim.sim.webhook_secret)
    answer = webhook.handle({"stripe-signature": header}, body)
    assert answer.status == 400
    assert json.loads(answer.body)["error"]["code"] == "invalid_signature"
    assert billing_store.get_event("evt_1SignatureCheck") is None
    assert _queued(stack) == 0


def test_during_a_rotation_either_secret_verifies(
    stack: Stack, quiet_sim: Billing, monkeypatch: pytest.MonkeyPatch
) -> None:
    from talkturo import config

    monkeypatch.setenv("STRIPE_WEBHOOK_SECRETS", "whsec_old_one, whsec_new_one")
    config.get_settings.cache_clear()
    # Signed with the new secret only
    body, header = signed(_event_body(), "whsec_new_one")
    assert webhook.handle({"stripe-signature": header}, body).status == 200
    # Stripe's own rotation header: one v1 per secret, the first for a secret we do not hold
    event = {**_event_body(), "id": "evt_2SignatureCheck"}
    body, header = signed(event, "whsec_old_one")
    _, other = signed(event, "whsec_unknown")
    both = other + "," + header.split(",", 1)[1]
    assert webhook.handle({"stripe-signature": both}, body).status == 200
    assert billing_store.get_event("evt_1SignatureCheck") is not None
    assert billing_store.get_event("evt_2SignatureCheck") is not None


# ----------------------------------------------------------------------------- refunds, disputes
def test_a_refund_that_arrives_before_the_purchase_still_counts_once(
    client: TestClient, stack: Stack, tenant: Tenant, quiet_sim: Billing
) -> None:
    intent = _buy(client, tenant, quiet_sim, "pkg_50")
    quiet_sim.client.v1.refunds.create(params={"payment_intent": intent, "amount": 1000})
    # When the refund's event is the first one to arrive
    (refunded,) = _events_of(quiet_sim, intent, "charge.refunded")
    assert _deliver(quiet_sim, refunded) == 200
    billing_queue.drain(stack)
    # Then the purchase was granted first and a fifth of it (bonus included) taken back
    assert _stripe_entries(client, tenant) == [
        ("bonus", "5.0000"),
        ("payment_refund", "-21.0000"),
        ("purchase", "100.0000"),
    ]
    # And the purchase's own events, when they come, change nothing
    for event in _events_of(
        quiet_sim, intent, "payment_intent.succeeded", "checkout.session.completed"
    ):
        assert _deliver(quiet_sim, event) == 200
    _deliver(quiet_sim, refunded)
    billing_queue.drain(stack)
    assert _balance(tenant) == Decimal(10 + 105 - 21)


def test_partial_refunds_take_back_their_share_once_each(
    client: TestClient, stack: Stack, tenant: Tenant, stripe_sim: Billing
) -> None:
    stripe_sim.sim.switches.update(copies=2)
    intent = _buy(client, tenant, stripe_sim, "pkg_100")
    refunds = stripe_sim.client.v1.refunds
    refunds.create(params={"payment_intent": intent, "amount": 2500})
    refunds.create(params={"payment_intent": intent, "amount": 2500})
    stripe_sim.settle()
    billing_queue.drain(stack)
    # Then each refund took a quarter of the 220 credits, once
    kinds = _stripe_entries(client, tenant)
    assert kinds.count(("payment_refund", "-55.0000")) == 2 and len(kinds) == 4
    payment = client.get("/v1/credits/payments", headers=tenant.headers).json()["data"][0]
    assert (payment["status"], payment["refunded_cents"]) == ("partially_refunded", 5000)
    # When the rest is refunded
    refunds.create(params={"payment_intent": intent})
    stripe_sim.settle()
    billing_queue.drain(stack)
    assert _balance(tenant) == Decimal(10)
    payment = client.get("/v1/credits/payments", headers=tenant.headers).json()["data"][0]
    assert (payment["status"], payment["refunded_cents"]) == ("refunded", 10000)


def test_a_refund_that_fails_afterwards_gives_the_credits_back_once(
    client: TestClient, stack: Stack, tenant: Tenant, stripe_sim: Billing
) -> None:
    # Given $25 of the $100 package refunded (55 of its 220 credits taken back)
    intent = _buy(client, tenant, stripe_sim, "pkg_100")
    refund = stripe_sim.client.v1.refunds.create(params={"payment_intent": intent, "amount": 2500})
    stripe_sim.settle()
    billing_queue.drain(stack)
    assert _balance(tenant) == Decimal(10 + 220 - 55)
    # When that refund fails afterwards (the buyer's card is gone): Stripe's three events about
    # it, each sent three times (the simulator's default), in reverse order
    failed = httpx.post(
        f"{stripe_sim.sim.url}/_sim/refunds/{refund.id}/fail",
        data={"failure_reason": "lost_or_stolen_card"},
        headers={"Authorization": f"Bearer {stripe_sim.sim.secret_key}"},
    )
    assert failed.status_code == 200 and failed.json()["status"] == "failed", failed.text
    stripe_sim.settle()
    billing_queue.drain(stack)
    # Then the 55 credits come back once: the refund's entry and its failure's cancel out
    assert _balance(tenant) == Decimal(10 + 220)
    assert _stripe_entries(client, tenant) == [
        ("bonus", "20.0000"),
        ("payment_refund", "-55.0000"),
        ("payment_refund", "55.0000"),
        ("purchase", "200.0000"),
    ]
    back = [e for e in _ledger(client, tenant) if e["idempotency_key"].endswith(":failed")]
    assert [(e["reference"], e["amount"]) for e in back] == [(refund.id, "55.0000")]
    payment = client.get("/v1/credits/payments", headers=tenant.headers).json()["data"][0]
    assert (payment["status"], payment["refunded_cents"]) == ("succeeded", 0)
    # And again, any number of times (a replay of every event, another refund's webhook)
    assert billing_service.apply_refunds(str(refund.charge)).endswith("1 failed and given back")
    assert _balance(tenant) == Decimal(10 + 220)
    # A refund already failed cannot fail again
    again = httpx.post(
        f"{stripe_sim.sim.url}/_sim/refunds/{refund.id}/fail",
        headers={"Authorization": f"Bearer {stripe_sim.sim.secret_key}"},
    )
    assert again.status_code == 400


def test_a_refund_seen_only_once_it_failed_moves_nothing_in_the_end(
    client: TestClient, stack: Stack, tenant: Tenant, quiet_sim: Billing
) -> None:
    # Given a purchase granted, and a refund of it that failed before any of its events came
    intent = _buy(client, tenant, quiet_sim, "pkg_50")
    assert billing_service.grant_payment(intent).granted
    refund = quiet_sim.client.v1.refunds.create(params={"payment_intent": intent})
    quiet_sim.sim.state.fail_refund(refund.id, "expired_or_canceled_card")
    # When only the failure's event arrives
    (event,) = _events_of(quiet_sim, refund.id, "refund.failed")
    assert _deliver(quiet_sim, event) == 200
    billing_queue.drain(stack)
    # Then the credits were taken and given back, once each: the balance is as it was
    assert _balance(tenant) == Decimal(10 + 105)
    kinds = _stripe_entries(client, tenant)
    assert kinds.count(("payment_refund", "-105.0000")) == 1
    assert kinds.count(("payment_refund", "105.0000")) == 1


def test_a_refund_after_the_credits_were_spent_leaves_the_balance_negative(
    client: TestClient, stack: Stack, tenant: Tenant, stripe_sim: Billing, carrier: FakeCarrier
) -> None:
    line = calls_setup.line(client, stack, tenant, "+14155550140")
    intent = _buy(client, tenant, stripe_sim, "pkg_10")
    stripe_sim.settle()
    billing_queue.drain(stack)
    # Given the account spent most of its 30 credits (the purchase kept its trial number,
    # which then paid its first month: 3 credits)
    rent = Decimal(3)
    assert _balance(tenant) == Decimal(30) - rent
    credits.record(tenant.account_id, "usage", Decimal(-25), idempotency_key="spent")
    # When the payment is refunded in full
    stripe_sim.client.v1.refunds.create(params={"payment_intent": intent})
    stripe_sim.settle()
    billing_queue.drain(stack)
    # Then the balance is below zero, and no new call is placed
    assert _balance(tenant) == Decimal(30 - 25 - 20) - rent
    answer = client.post(
        "/v1/calls",
        json={"assistant_id": line.assistant_id, "to_number": "+14155550188"},
        headers=tenant.headers,
    )
    assert answer.status_code == 402
    assert answer.json()["error"]["code"] == "insufficient_credits"


def test_a_dispute_takes_the_credits_back_and_a_won_dispute_gives_them_back(
    client: TestClient, stack: Stack, tenant: Tenant, stripe_sim: Billing
) -> None:
    intent = _buy(client, tenant, stripe_sim, "pkg_500")
    dispute = stripe_sim.sim.dispute(intent)
    stripe_sim.settle()
    billing_queue.drain(stack)
    assert _balance(tenant) == Decimal(10)
    assert (
        client.get("/v1/credits/payments", headers=tenant.headers).json()["data"][0]["status"]
        == "disputed"
    )
    stripe_sim.sim.close_dispute(dispute["id"], "won")
    stripe_sim.settle()
    billing_queue.drain(stack)
    assert _balance(tenant) == Decimal(10 + 1150)
    assert sorted(e[1] for e in _stripe_entries(client, tenant) if e[0] == "dispute") == [
        "-1150.0000",
        "1150.0000",
    ]


# ----------------------------------------------------------------------------- off-session
def test_a_saved_card_pays_off_session_and_a_card_needing_authentication_is_refused(
    client: TestClient, stack: Stack, tenant: Tenant, stripe_sim: Billing
) -> None:
    _buy(client, tenant, stripe_sim, "pkg_10", save_card=True)
    card = billing_service.saved_card(tenant.account_id)
    assert card is not None and card.last4 == "4242"
    purchase = purchase_of("pkg_50", None)
    paid = billing_service.charge_off_session(
        tenant.account_id, purchase, idempotency_key="reload:1", metadata={"talkturo_reload": "1"}
    )
    again = billing_service.charge_off_session(
        tenant.account_id, purchase, idempotency_key="reload:1", metadata={"talkturo_reload": "1"}
    )
    assert paid.status == "succeeded" and again.id == paid.id
    stripe_sim.settle()
    billing_queue.drain(stack)
    assert _balance(tenant) == Decimal(10 + 20 + 105)
    payments = client.get("/v1/credits/payments", headers=tenant.headers).json()["data"]
    # (made within one second: their order is not the point)
    assert sorted((p["amount_cents"], p["auto_reload"]) for p in payments) == [
        (1000, False),
        (5000, True),
    ]
    # A card that needs its holder: refused with authentication_required, never charged
    gateway = billing_service.get_gateway()
    customer = billing_store.customer_of(tenant.account_id)
    assert customer is not None
    with pytest.raises(PaymentFailed) as refused:
        gateway.charge_saved_card(
            account_id=tenant.account_id,
            customer_id=customer,
            payment_method_id="pm_card_authenticationRequired",
            purchase=purchase,
            idempotency_key="reload:2",
        )
    assert refused.value.needs_authentication
    with pytest.raises(PaymentFailed) as declined:
        gateway.charge_saved_card(
            account_id=tenant.account_id,
            customer_id=customer,
            payment_method_id="pm_card_chargeDeclined",
            purchase=purchase,
            idempotency_key="reload:3",
        )
    assert (declined.value.failure_code, declined.value.decline_code) == (
        "card_declined",
        "generic_decline",
    )


# ----------------------------------------------------------------------------- reconciliation
def _since() -> Any:
    from datetime import timedelta

    from talkturo.domain.common import utcnow

    return utcnow() - timedelta(hours=1)


def test_reconciliation_lists_what_the_ledger_misses_until_it_is_applied(
    client: TestClient, stack: Stack, tenant: Tenant, quiet_sim: Billing
) -> None:
    intent = _buy(client, tenant, quiet_sim, "pkg_50")
    quiet_sim.client.v1.refunds.create(params={"payment_intent": intent, "amount": 500})
    quiet_sim.sim.dispute(intent, 1000)
    refund_id = next(iter(quiet_sim.sim.state.objects["refund"]))
    # The events never arrived: every one is a difference
    report = billing_service.reconcile(_since())
    assert (report.payments, report.refunds, report.disputes) == (1, 1, 1)
    assert sorted((d.kind, d.stripe_id) for d in report.differences) == sorted(
        [
            ("missing_grant", intent),
            ("missing_refund", refund_id),
            ("missing_dispute", next(iter(quiet_sim.sim.state.objects["dispute"]))),
        ]
    )
    # Once they are delivered and applied, none is left
    for event in quiet_sim.sim.state.objects["event"].values():
        _deliver(quiet_sim, event)
    billing_queue.drain(stack)
    assert billing_service.reconcile(_since()).differences == []
    assert _balance(tenant) == Decimal(10 + 105) - Decimal("10.5") - Decimal(21)
