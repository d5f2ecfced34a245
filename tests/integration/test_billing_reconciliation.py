"""Reconciliation (docs/billing.md): Stripe's payments, refunds and disputes against the ledger,
through the admin route and `talkturo billing reconcile`, against the Stripe simulator. Every
difference is made for real: a payment whose webhook never came, a ledger entry deleted, a
payment recorded here that Stripe does not show as succeeded.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import stripe
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient

from talkturo.domain import billing as rules
from talkturo.domain.billing import Payment, purchase_of
from talkturo.domain.common import utcnow
from talkturo.local.template import Stack
from talkturo.store import billing as billing_store
from talkturo.store import keys, ledger
from tests.asgi_server import served
from tests.conftest import Tenant
from tests.integration import billing_queue
from tests.integration.billing_setup import Billing, admin_secret, billing
from tests.integration.test_billing import _buy, _deliver

pytestmark = pytest.mark.integration

ADMIN = "an-admin-secret-for-reconciliation-tests"
ROUTE = "/v1/admin/billing/reconciliation"


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch, stack: Stack) -> Iterator[dict[str, str]]:
    with admin_secret(monkeypatch, ADMIN) as headers:
        yield headers


@pytest.fixture
def quiet_sim(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Billing]:
    """The simulator with no webhook endpoint: the test chooses which events arrive."""
    with billing(monkeypatch, endpoint=False) as wired:
        yield wired


def _deliver_everything_so_far(wired: Billing, stack: Stack) -> None:
    with wired.sim.state.lock:
        events = list(wired.sim.state.objects["event"].values())
    for event in events:  # a repeat is acknowledged and not applied again
        assert _deliver(wired, event) == 200
    billing_queue.drain(stack)


def _reconcile_with_cli(*arguments: str, secret: str = ADMIN) -> Result:
    from talkturo.api.app import create_app
    from talkturo.cli import main

    with served(create_app()) as url:
        env = {"TALKTURO_API_URL": url, "TALKTURO_ADMIN_SECRET": secret}
        return CliRunner().invoke(main, ["billing", "reconcile", *arguments], env=env)


def _delete_entry(account_id: str, idempotency_key: str) -> str:
    """Delete the ledger entry an idempotency key made (its guard stays, as a lost write
    would leave it); the entry's id."""
    entry = ledger.entry_for_key(account_id, idempotency_key)
    assert entry is not None
    ledger.LedgerEntryItem.get(keys.account(account_id), f"TXN#{entry.id}").delete()
    return entry.id


def _pay_outside_checkout(
    wired: Billing, card: str, amount_cents: int, metadata: dict[str, str]
) -> str:
    """A PaymentIntent made straight through Stripe's API, not by our checkout: its id, whether
    the card paid or was declined."""
    params: dict[str, Any] = {
        "amount": amount_cents,
        "currency": "usd",
        "payment_method": card,
        "confirm": True,
        "metadata": metadata,
    }
    try:
        return wired.client.v1.payment_intents.create(params=params).id  # type: ignore[arg-type]
    except stripe.CardError as error:
        intent_id: str = (error.json_body or {})["error"]["payment_intent"]["id"]  # type: ignore[index]
        return intent_id


def _record(account_id: str, intent_id: str) -> None:
    billing_store.record_payment(
        account_id,
        Payment(
            id=intent_id,
            package="pkg_10",
            amount_cents=1000,
            credits=Decimal(20),
            bonus_credits=Decimal(0),
            created_at=utcnow(),
        ),
    )


# ----------------------------------------------------------------------------- no difference
def test_a_clean_state_has_no_difference_in_the_route_and_the_cli(
    client: TestClient, stack: Stack, tenant: Tenant, admin: dict[str, str], quiet_sim: Billing
) -> None:
    # Given a purchase, a partial refund, a dispute won, all of it applied
    intent = _buy(client, tenant, quiet_sim, "pkg_50")
    quiet_sim.client.v1.refunds.create(params={"payment_intent": intent, "amount": 1000})
    dispute = quiet_sim.sim.dispute(intent, 2000)
    quiet_sim.sim.close_dispute(dispute["id"], "won")
    # and a payment made on the same Stripe account by something else
    _pay_outside_checkout(quiet_sim, "pm_card_visa", 700, {})
    _deliver_everything_so_far(quiet_sim, stack)

    answer = client.get(ROUTE, headers=admin)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert (report["payments"], report["refunds"], report["disputes"]) == (1, 1, 1)
    assert report["not_ours"] == 1
    assert report["differences"] == []

    run = _reconcile_with_cli("--since-days", "1")
    assert run.exit_code == 0, run.output
    first, verdict = run.output.splitlines()
    assert "1 payments, 1 refunds, 1 disputes (1 Stripe payments not ours)" in first
    assert verdict.startswith("No differences")


def test_a_refund_that_failed_is_owed_nothing_once_its_credits_came_back(
    client: TestClient, stack: Stack, tenant: Tenant, admin: dict[str, str], quiet_sim: Billing
) -> None:
    # Given a purchase whose partial refund failed afterwards, every event applied
    intent = _buy(client, tenant, quiet_sim, "pkg_50")
    refund = quiet_sim.client.v1.refunds.create(params={"payment_intent": intent, "amount": 1000})
    quiet_sim.sim.state.fail_refund(refund.id, "unknown")
    _deliver_everything_so_far(quiet_sim, stack)
    # Then it is counted and nothing differs (not a missing_refund: it took and gave back)
    report = client.get(ROUTE, headers=admin).json()
    assert (report["payments"], report["refunds"], report["differences"]) == (1, 1, [])
    # When the entry that gave the credits back is lost
    _delete_entry(tenant.account_id, rules.failed_refund_key(intent, refund.id))
    # Then that is the difference, named by the refund
    report = client.get(ROUTE, headers=admin).json()
    assert [(d["kind"], d["stripe_id"], d["account_id"]) for d in report["differences"]] == [
        ("missing_refund_return", refund.id, tenant.account_id)
    ]
    assert report["differences"][0]["detail"] == (
        "21.0000 credits taken by a failed refund, not given back"
    )


# ----------------------------------------------------------------------------- every kind
def test_each_difference_kind_is_reported_with_its_ids(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    other_tenant: Tenant,
    admin: dict[str, str],
    quiet_sim: Billing,
) -> None:
    me, other = tenant.account_id, other_tenant.account_id
    # Given payments whose events all arrived and were applied
    refunded = _buy(client, tenant, quiet_sim, "pkg_50")
    disputed = _buy(client, tenant, quiet_sim, "pkg_100")
    without_bonus = _buy(client, tenant, quiet_sim, "pkg_500")
    without_purchase = _buy(client, tenant, quiet_sim, "custom", amount_cents=2500)
    opened = quiet_sim.sim.dispute(disputed, 5000)
    # $10 that claims the $50 package
    mismatched = _pay_outside_checkout(
        quiet_sim, "pm_card_visa", 1000, purchase_of("pkg_50", None).metadata(me)
    )
    # (it granted nothing, so its refund and dispute have nothing to take back: no difference)
    quiet_sim.client.v1.refunds.create(params={"payment_intent": mismatched, "amount": 300})
    quiet_sim.sim.dispute(mismatched, 700)
    _deliver_everything_so_far(quiet_sim, stack)
    # When entries are lost from the ledger
    _delete_entry(me, rules.bonus_key(without_bonus))
    _delete_entry(me, rules.purchase_key(without_purchase))
    # and Stripe says things whose events never arrive
    unannounced = _buy(client, other_tenant, quiet_sim, "pkg_10")
    refund = quiet_sim.client.v1.refunds.create(
        params={"payment_intent": refunded, "amount": 1000}
    ).id
    undelivered_dispute = quiet_sim.sim.dispute(refunded, 500)["id"]
    quiet_sim.sim.close_dispute(opened["id"], "won")
    # and payments are recorded here that Stripe does not show as succeeded
    declined = _pay_outside_checkout(
        quiet_sim, "pm_card_chargeDeclined", 1000, purchase_of("pkg_10", None).metadata(other)
    )
    _record(other, declined)
    _record(other, "pi_0NeverSeenByStripe000000")

    answer = client.get(ROUTE, params={"since_days": 1}, headers=admin)

    # Then each difference is there once, with the Stripe object's id and the account
    assert answer.status_code == 200, answer.text
    report = answer.json()
    found = sorted((d["kind"], d["stripe_id"], d["account_id"]) for d in report["differences"])
    assert found == sorted(
        [
            ("missing_grant", unannounced, other),
            ("missing_grant", without_purchase, me),
            ("amount_mismatch", without_bonus, me),
            ("amount_mismatch", mismatched, me),
            ("missing_refund", refund, me),
            ("missing_dispute", undelivered_dispute, me),
            ("missing_dispute", opened["id"], me),
            ("unknown_payment", declined, other),
            ("unknown_payment", "pi_0NeverSeenByStripe000000", other),
        ]
    )
    details = {(d["kind"], d["stripe_id"]): d["detail"] for d in report["differences"]}
    assert details[("missing_grant", unannounced)] == "20.0000 credits"
    assert details[("amount_mismatch", without_bonus)] == "ledger 1000.0000, payment 1150.0000"
    assert details[("missing_refund", refund)] == "21.0000 credits"
    assert details[("missing_dispute", opened["id"])] == "won entry"
    assert "requires_payment_method at Stripe" in details[("unknown_payment", declined)]
    assert "unknown to Stripe" in details[("unknown_payment", "pi_0NeverSeenByStripe000000")]
    # (the period's objects of ours: six payments succeeded, the declined one is not counted)
    assert (report["payments"], report["refunds"], report["disputes"]) == (6, 2, 3)

    # And the command prints the same differences, one a line, and exits 1
    run = _reconcile_with_cli()
    assert run.exit_code == 1, run.output
    *lines, verdict = run.output.splitlines()[1:]
    assert verdict.startswith("9 differences: ")
    printed = sorted(tuple(line.split()[:3]) for line in lines)
    assert printed == found, run.output


# ----------------------------------------------------------------------------- the route, the CLI
def test_the_route_needs_the_admin_secret(
    client: TestClient, tenant: Tenant, admin: dict[str, str], quiet_sim: Billing
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, tenant.headers):
        answer = client.get(ROUTE, headers=headers)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == "invalid_admin_secret"
    run = _reconcile_with_cli(secret="not-the-secret")
    assert run.exit_code == 1 and "HTTP 401" in run.output, run.output


@pytest.mark.parametrize("since_days", ["0", "91", "-3", "a week"])
def test_the_route_names_a_wrong_since_days(
    client: TestClient, admin: dict[str, str], quiet_sim: Billing, since_days: str
) -> None:
    answer = client.get(ROUTE, params={"since_days": since_days}, headers=admin)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["param"] == "since_days" and "since_days" in error["message"]


def test_the_cli_refuses_a_wrong_since_days_before_asking(quiet_sim: Billing) -> None:
    from talkturo.cli import main

    run = CliRunner().invoke(
        main,
        ["billing", "reconcile", "--since-days", "0"],
        env={"TALKTURO_API_URL": "http://127.0.0.1:9", "TALKTURO_ADMIN_SECRET": ADMIN},
    )
    assert run.exit_code == 2 and "--since-days" in run.output, run.output
