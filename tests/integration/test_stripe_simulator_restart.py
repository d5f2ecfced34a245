"""The Stripe simulator stopped and started again from its saved state (what the local platform
does across a restart, docs/local-platform.md): the payments, customers and saved cards are
there, an idempotency key answers what it answered before, a bank debit still processing
succeeds, and the webhooks the platform had not received go out then.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from talkturo.domain.billing import purchase_of
from talkturo.domain.common import utcnow
from talkturo.local.stripe_sim import StripeSimulator
from talkturo.local.stripe_sim.state import DELAYED
from talkturo.local.template import Stack
from talkturo.services import billing as billing_service
from talkturo.services import credits
from tests.conftest import Tenant
from tests.integration import billing_queue
from tests.integration.billing_setup import Billing, billing
from tests.integration.test_billing import _buy, _checkout

pytestmark = pytest.mark.integration


@pytest.fixture
def stripe_sim(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Billing]:
    with billing(monkeypatch) as wired:
        yield wired


@contextlib.contextmanager
def restarted(wired: Billing, **options: float) -> Iterator[StripeSimulator]:
    """Stop the simulator and start another on its port from what it saved (through JSON, as
    the data folder holds it), as the local platform does; `wired.sim` is the new one."""
    old = wired.sim
    saved = json.loads(json.dumps(old.saved_state()))
    old.stop()
    new = StripeSimulator(
        port=old.port,
        secret_key=saved["secret_key"],
        webhook_secret=saved["webhook_secret"],
        saved=saved,
        **options,  # type: ignore[arg-type]
    )
    new.switches.update(retry_seconds=0.05)
    new.start()
    new.restore_endpoints()
    wired.sim = new
    try:
        yield new
    finally:
        new.stop()


def _reconciled() -> list[tuple[str, str]]:
    from datetime import timedelta

    report = billing_service.reconcile(utcnow() - timedelta(hours=1))
    return [(d.kind, d.stripe_id) for d in report.differences]


def _balance(tenant: Tenant) -> Decimal:
    return credits.balance(tenant.account_id).balance


def test_after_a_restart_the_ledger_still_matches_and_the_saved_card_pays(
    client: TestClient, stack: Stack, tenant: Tenant, stripe_sim: Billing
) -> None:
    # Given a purchase that saved the card, and an off-session payment with our own key
    _buy(client, tenant, stripe_sim, "pkg_10", save_card=True)
    purchase = purchase_of("pkg_50", None)
    reload = billing_service.charge_off_session(
        tenant.account_id, purchase, idempotency_key="reload:1", metadata={"talkturo_reload": "1"}
    )
    stripe_sim.settle()
    billing_queue.drain(stack)
    assert _balance(tenant) == Decimal(10 + 20 + 105)
    customers = dict(stripe_sim.sim.state.objects["customer"])

    with restarted(stripe_sim) as sim:
        # Then Stripe's side is what it was: reconciliation finds no difference
        assert sim.state.objects["customer"] == customers
        assert sim.deliveries() == []  # everything had been delivered: nothing is sent again
        assert _reconciled() == []
        # The same key answers the same payment, not a second charge
        again = billing_service.charge_off_session(
            tenant.account_id,
            purchase,
            idempotency_key="reload:1",
            metadata={"talkturo_reload": "1"},
        )
        assert again.id == reload.id
        assert len(sim.state.objects["payment_intent"]) == 2
        # The saved card pays again, its credits come through the webhook
        card = billing_service.saved_card(tenant.account_id)
        assert card is not None and card.last4 == "4242"
        paid = billing_service.charge_off_session(
            tenant.account_id, purchase, idempotency_key="reload:2"
        )
        assert paid.status == "succeeded" and paid.id != reload.id
        stripe_sim.settle()
        billing_queue.drain(stack)
        assert _balance(tenant) == Decimal(10 + 20 + 105 + 105)
        # And a new checkout is for the same customer, kept across the restart
        session = _checkout(client, tenant, package="pkg_100")
        assert sim.state.objects["checkout.session"][session["id"]]["customer"] in customers
        assert _reconciled() == []


def test_webhooks_not_delivered_before_the_stop_are_sent_after_it(
    client: TestClient, stack: Stack, tenant: Tenant, stripe_sim: Billing
) -> None:
    # Given a payment whose webhooks are held back when the simulator stops
    stripe_sim.sim.switches.update(delay_seconds=600, copies=2)
    intent = _buy(client, tenant, stripe_sim, "pkg_50")
    held = len(stripe_sim.sim.deliveries())
    assert held > 0 and not stripe_sim.sim.wait_for_webhooks(0.2)
    assert _reconciled() == [("missing_grant", intent)]

    with restarted(stripe_sim) as sim:
        # When the restarted simulator's endpoint listens again
        assert sim.resume_deliveries() == held
        assert sim.resume_deliveries() == 0  # once
        stripe_sim.settle()
        billing_queue.drain(stack)
        # Then every held delivery went, and the credits arrived once
        assert all(d["delivered"] for d in sim.deliveries()), sim.deliveries()
        assert _balance(tenant) == Decimal(10 + 105)
        assert _reconciled() == []


def test_a_bank_debit_still_processing_at_the_stop_succeeds_after_it(
    client: TestClient, stack: Stack, tenant: Tenant, stripe_sim: Billing
) -> None:
    stripe_sim.sim.settle_seconds = 3600  # it would not succeed before the stop
    session = _checkout(client, tenant, package="pkg_10")
    assert stripe_sim.sim.pay(session["id"], DELAYED)["result"] == "processing"
    stripe_sim.settle()
    billing_queue.drain(stack)
    assert _balance(tenant) == Decimal(10)

    with restarted(stripe_sim, settle_seconds=0.2) as sim:
        deadline = time.monotonic() + 10
        while sim.state.objects["checkout.session"][session["id"]]["payment_status"] != "paid":
            assert time.monotonic() < deadline, "the bank debit never succeeded"
            time.sleep(0.05)
        # Paid: its webhook goes out once the simulator gets to it (later on a loaded machine).
        while _balance(tenant) != Decimal(10 + 20):
            assert time.monotonic() < deadline + 10, "the debit's credits never arrived"
            stripe_sim.settle()
            billing_queue.drain(stack)
        assert _reconciled() == []
