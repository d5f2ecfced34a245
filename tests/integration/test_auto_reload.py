"""Auto-reload end to end on the emulator: a usage draw below the threshold queues one reload,
the billing worker charges the saved card off-session on the Stripe simulator (through the
stripe SDK), the simulator's signed webhooks bring the credits like any purchase, and the
purchase arms auto-reload again. Refused cards, the monthly cap and a live call drawing
against a pending reload. The `talkturo billing auto-reload` command over the same routes."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient

from talkturo.domain.common import utcnow
from talkturo.domain.events import WebhookEndpointCreate
from talkturo.errors import InsufficientCredits
from talkturo.local.template import Stack
from talkturo.services import credits, events
from talkturo.store import auto_reload as reload_store
from talkturo.voice.metering import Meter, ledger_charge
from tests.asgi_server import served
from tests.conftest import Tenant
from tests.integration import billing_queue, event_queue
from tests.integration.billing_setup import Billing, billing

pytestmark = pytest.mark.integration

VISA = "4242424242424242"
SAVED_THEN_DECLINED = "4000000000000341"
ALWAYS_AUTHENTICATE = "4000002760003184"
PKG_10_CREDITS = Decimal(20)
PKG_50_CREDITS = Decimal(105)


@pytest.fixture
def stripe_sim(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Billing]:
    with billing(monkeypatch) as wired:
        yield wired


def _save_card(
    client: TestClient, stack: Stack, tenant: Tenant, wired: Billing, card: str = VISA
) -> None:
    """Buy pkg_10 (20 credits) with `card`, saving it for off-session payments."""
    answer = client.post(
        "/v1/credits/checkout",
        json={"package": "pkg_10", "save_card": True},
        headers=tenant.headers,
    )
    assert answer.status_code == 201, answer.text
    session = answer.json()["id"]
    paid = wired.sim.pay(session, card)
    if paid["result"] == "authenticate":
        paid = wired.sim.authenticate(session)
    assert paid["result"] == "paid", paid
    _apply(stack, wired)


def _apply(stack: Stack, wired: Billing) -> None:
    """Everything on its way lands: queued reloads are charged, webhooks answered, events
    applied (a charge sends webhooks, whose events the worker applies in turn)."""
    while True:
        wired.settle()
        if not billing_queue.drain(stack):
            wired.settle()
            if not billing_queue.drain(stack):
                return


def _settings(client: TestClient, tenant: Tenant, **changes: Any) -> dict[str, Any]:
    answer = client.patch("/v1/credits/auto-reload", json=changes, headers=tenant.headers)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def _read(client: TestClient, tenant: Tenant) -> dict[str, Any]:
    result: dict[str, Any] = client.get("/v1/credits/auto-reload", headers=tenant.headers).json()
    return result


def _draw(tenant: Tenant, amount: str, key: str) -> None:
    credits.record(tenant.account_id, "usage", -Decimal(amount), idempotency_key=key)


def _balance(tenant: Tenant) -> Decimal:
    return credits.balance(tenant.account_id).balance


def _reload_charges(wired: Billing, tenant: Tenant) -> list[dict[str, Any]]:
    """Every off-session PaymentIntent auto-reload asked the simulator for, oldest first."""
    with wired.sim.state.lock:
        intents = list(wired.sim.state.objects["payment_intent"].values())
    return sorted(
        (
            i
            for i in intents
            if i["metadata"].get("talkturo_reload")
            and i["metadata"].get("talkturo_account") == tenant.account_id
        ),
        key=lambda i: int(i["metadata"]["talkturo_reload"]),
    )


def _endpoint(tenant: Tenant) -> str:
    made = events.create_endpoint(
        tenant.account_id, WebhookEndpointCreate(url="https://hooks.example.com/events")
    )
    return made.id


def _low_events(tenant: Tenant, endpoint_id: str) -> list[dict[str, Any]]:
    return event_queue.emitted(tenant.account_id, endpoint_id, "credits.low")


# ----------------------------------------------------------------------------- settings
def test_the_settings_name_what_is_wrong_and_turning_on_needs_a_saved_card(
    client: TestClient, stack: Stack, tenant: Tenant, stripe_sim: Billing
) -> None:
    assert _read(client, tenant)["state"] == "off"

    def refused(body: dict[str, Any]) -> tuple[int, str | None, str]:
        answer = client.patch("/v1/credits/auto-reload", json=body, headers=tenant.headers)
        error = answer.json()["error"]
        return answer.status_code, error.get("param"), error["code"]

    assert refused({"enabled": True, "threshold": "20", "package": "pkg_99"})[:2] == (
        422,
        "package",
    )
    assert refused({"enabled": True, "threshold": "20", "package": "custom"})[:2] == (
        422,
        "package",
    )
    assert refused({"enabled": True, "threshold": "-1", "package": "pkg_50"})[:2] == (
        422,
        "threshold",
    )
    assert refused({"enabled": True, "package": "pkg_50"})[:2] == (422, "threshold")
    assert refused({"enabled": True, "threshold": "20", "package": "pkg_50", "monthly_cap": "50"})[
        :2
    ] == (422, "monthly_cap")
    # Saved while off, without a threshold: turning it on asks for one
    assert _settings(client, tenant, package="pkg_50")["threshold"] is None
    assert refused({"enabled": True})[:2] == (422, "threshold")
    # No card saved yet: a 409 that says how to save one
    assert refused({"enabled": True, "threshold": "20", "package": "pkg_50"}) == (
        409,
        "payment_method",
        "no_saved_card",
    )
    _save_card(client, stack, tenant, stripe_sim)
    on = _settings(
        client, tenant, enabled=True, threshold="20", package="pkg_50", monthly_cap="500"
    )
    assert (on["state"], on["threshold"], on["package_credits"], on["monthly_cap"]) == (
        "armed",
        "20.0000",
        "105.0000",
        "500.0000",
    )
    assert on["charging_now"] is False  # 30 credits: above the threshold
    # A partial change keeps the rest; null lifts the cap
    changed = _settings(client, tenant, monthly_cap=None)
    assert (changed["monthly_cap"], changed["package"], changed["enabled"]) == (
        None,
        "pkg_50",
        True,
    )
    assert _settings(client, tenant, enabled=False)["state"] == "off"


# ----------------------------------------------------------------------------- one per drop
def test_a_drop_below_the_threshold_charges_one_reload_whose_credits_arrive_and_rearm_it(
    client: TestClient, stack: Stack, tenant: Tenant, stripe_sim: Billing
) -> None:
    _save_card(client, stack, tenant, stripe_sim)  # 10 + 20 = 30
    _settings(client, tenant, enabled=True, threshold="25", package="pkg_50")
    _draw(tenant, "4", "u1")  # 26: above
    assert _read(client, tenant)["state"] == "armed"
    _draw(tenant, "2", "u2")  # 24: below, a reload starts
    _draw(tenant, "1", "u3")  # 23: the same drop
    pending = _read(client, tenant)
    assert pending["state"] == "pending" and pending["pending"]["sequence"] == 1
    assert pending["pending"]["credits"] == "105.0000"
    _apply(stack, stripe_sim)
    (charged,) = _reload_charges(stripe_sim, tenant)
    assert charged["status"] == "succeeded" and charged["amount"] == 5000
    assert _balance(tenant) == Decimal(23) + PKG_50_CREDITS
    # Through the webhook, like any purchase: the payment is listed as an auto-reload
    payments = client.get("/v1/credits/payments", headers=tenant.headers).json()["data"]
    assert {(p["id"], p["auto_reload"]) for p in payments if p["auto_reload"]} == {
        (charged["id"], True)
    }
    after = _read(client, tenant)
    assert (after["state"], after["reloads"], after["reloaded_this_month"]) == (
        "armed",
        1,
        "105.0000",
    )
    # Armed again: the next drop charges the second reload, with its own key
    _draw(tenant, "110", "u4")  # 128 → 18
    _apply(stack, stripe_sim)
    assert [c["metadata"]["talkturo_reload"] for c in _reload_charges(stripe_sim, tenant)] == [
        "1",
        "2",
    ]
    assert _balance(tenant) == Decimal(18) + PKG_50_CREDITS


def test_draws_crossing_the_threshold_at_once_charge_one_reload(
    client: TestClient, stack: Stack, tenant: Tenant, stripe_sim: Billing
) -> None:
    _save_card(client, stack, tenant, stripe_sim)  # 30
    _settings(client, tenant, enabled=True, threshold="29", package="pkg_10")
    writers = 8
    start = threading.Barrier(writers)
    failures: list[BaseException] = []

    def draw(n: int) -> None:
        try:
            start.wait(timeout=10)
            _draw(tenant, "1", f"race:{n}")  # each one leaves the balance below 29
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=draw, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert failures == []
    # One claim, one message for the billing worker
    queued = [json.loads(body) for body in billing_queue.drain(stack)]
    assert [job["reload"] for job in queued if job.get("reload")] == [
        {"account_id": tenant.account_id, "sequence": 1}
    ]
    _apply(stack, stripe_sim)
    assert len(_reload_charges(stripe_sim, tenant)) == 1
    assert _balance(tenant) == Decimal(30 - writers) + PKG_10_CREDITS


def test_a_repeated_reload_message_charges_once(
    client: TestClient, stack: Stack, tenant: Tenant, stripe_sim: Billing
) -> None:
    from talkturo.domain.auto_reload import ReloadJob
    from talkturo.services import auto_reload

    _save_card(client, stack, tenant, stripe_sim)
    _settings(client, tenant, enabled=True, threshold="25", package="pkg_10")
    _draw(tenant, "6", "u1")
    job = ReloadJob(account_id=tenant.account_id, sequence=1)
    assert auto_reload.charge(job).startswith("charged")
    assert auto_reload.charge(job).startswith("charged before")
    _apply(stack, stripe_sim)  # the queued message too
    assert len(_reload_charges(stripe_sim, tenant)) == 1
    assert _balance(tenant) == Decimal(24) + PKG_10_CREDITS


# ----------------------------------------------------------------------------- refused cards
@pytest.mark.parametrize(
    ("card", "code"),
    [(SAVED_THEN_DECLINED, "card_declined"), (ALWAYS_AUTHENTICATE, "authentication_required")],
)
def test_a_refused_card_disarms_reload_says_why_tells_the_account_and_never_retries(
    client: TestClient, stack: Stack, tenant: Tenant, stripe_sim: Billing, card: str, code: str
) -> None:
    endpoint = _endpoint(tenant)
    _save_card(client, stack, tenant, stripe_sim, card)  # 30
    _settings(client, tenant, enabled=True, threshold="25", package="pkg_50")
    _draw(tenant, "6", "u1")  # 24
    _apply(stack, stripe_sim)
    assert [c["status"] for c in _reload_charges(stripe_sim, tenant)] != ["succeeded"]
    failed = _read(client, tenant)
    assert (failed["state"], failed["enabled"], failed["pending"]) == ("failed", True, None)
    assert failed["last_failure"]["code"] == code and failed["last_failure"]["sequence"] == 1
    assert failed["reloaded_this_month"] == "0.0000"  # nothing was charged
    (low,) = _low_events(tenant, endpoint)
    assert low["data"]["reason"] == "auto_reload_failed"
    assert low["data"]["auto_reload"]["failure_code"] == code
    # Later draws start nothing: no loop, no second attempt
    attempts = len(_reload_charges(stripe_sim, tenant))
    _draw(tenant, "1", "u2")
    _draw(tenant, "1", "u3")
    _apply(stack, stripe_sim)
    assert len(_reload_charges(stripe_sim, tenant)) == attempts
    assert _read(client, tenant)["state"] == "failed"
    assert _balance(tenant) == Decimal(22)
    # No call may draw against a reload that failed
    with pytest.raises(InsufficientCredits):
        ledger_charge(tenant.account_id, Decimal(30), "call:call_x:MZ1:usage:0", False)


# ----------------------------------------------------------------------------- the monthly cap
def test_the_monthly_cap_is_never_exceeded(
    client: TestClient, stack: Stack, tenant: Tenant, stripe_sim: Billing
) -> None:
    endpoint = _endpoint(tenant)
    _save_card(client, stack, tenant, stripe_sim)  # 30
    _settings(client, tenant, enabled=True, threshold="25", package="pkg_10", monthly_cap="50")
    _draw(tenant, "6", "d1")  # 24: reload 1 (20 credits)
    _apply(stack, stripe_sim)
    _draw(tenant, "20", "d2")  # 44 → 24: reload 2 (40 of 50)
    _apply(stack, stripe_sim)
    assert _balance(tenant) == Decimal(44)
    _draw(tenant, "20", "d3")  # 44 → 24: a third would make 60 > 50
    _apply(stack, stripe_sim)
    assert len(_reload_charges(stripe_sim, tenant)) == 2
    assert _balance(tenant) == Decimal(24)
    capped = _read(client, tenant)
    assert (capped["state"], capped["reloaded_this_month"], capped["reloads"]) == (
        "capped",
        "40.0000",
        2,
    )
    (low,) = _low_events(tenant, endpoint)
    assert low["data"]["reason"] == "auto_reload_capped"
    assert low["data"]["auto_reload"]["monthly_cap"] == "50.0000"
    _draw(tenant, "1", "d4")  # the same drop: told once
    assert len(_low_events(tenant, endpoint)) == 1


def test_a_reload_started_at_the_end_of_a_month_counts_in_it_and_the_next_month_starts_anew(
    client: TestClient, stack: Stack, tenant: Tenant, stripe_sim: Billing
) -> None:
    _save_card(client, stack, tenant, stripe_sim)
    _settings(client, tenant, enabled=True, threshold="25", package="pkg_10", monthly_cap="20")
    _draw(tenant, "6", "m1")  # reload 1: the cap's 20
    _apply(stack, stripe_sim)
    _draw(tenant, "20", "m2")  # capped this month
    assert _read(client, tenant)["state"] == "capped"
    # The month's count is of an earlier month now (as on the 1st): the next draw reloads
    reload_store.AutoReloadItem(f"A#{tenant.account_id}", reload_store.SK).update(
        actions=[reload_store.AutoReloadItem.month.set("2000-01")]
    )
    _draw(tenant, "1", "m3")
    _apply(stack, stripe_sim)
    assert len(_reload_charges(stripe_sim, tenant)) == 2
    assert _read(client, tenant)["reloaded_this_month"] == "20.0000"


# ----------------------------------------------------------------------------- enabling below
def test_turning_it_on_below_the_threshold_says_it_charges_now_and_does(
    client: TestClient, stack: Stack, tenant: Tenant, stripe_sim: Billing
) -> None:
    _save_card(client, stack, tenant, stripe_sim)  # 30
    on = _settings(client, tenant, enabled=True, threshold="50", package="pkg_50")
    assert on["charging_now"] is True and on["state"] == "pending"
    assert on["pending"]["sequence"] == 1
    _apply(stack, stripe_sim)
    assert len(_reload_charges(stripe_sim, tenant)) == 1
    assert _balance(tenant) == Decimal(30) + PKG_50_CREDITS
    assert _read(client, tenant)["state"] == "armed"


# ----------------------------------------------------------------------------- a live call
def test_a_pending_reload_keeps_a_live_call_going_for_a_bounded_time(
    client: TestClient, stack: Stack, tenant: Tenant, stripe_sim: Billing
) -> None:
    _save_card(client, stack, tenant, stripe_sim)  # 30
    on = _settings(client, tenant, enabled=True, threshold="40", package="pkg_10")
    assert on["state"] == "pending"  # queued, not charged yet: its 20 credits are on their way
    # A call's meter: 10-credit blocks (60 a minute), drawn one after another
    meter = Meter(
        account_id=tenant.account_id,
        call_id="call_live",
        stream_sid="MZlive",
        rate_per_minute=Decimal(60),
        started_at=0.0,
        clock=lambda: 1e9,  # every block is due at once
        charge=ledger_charge,
    )
    asyncio.run(meter.run())
    # 30 on hand and 20 pending: five blocks, not three, before the call runs out
    assert meter.exhausted.is_set()
    assert meter.drawn == Decimal(50) and _balance(tenant) == Decimal(-20)
    # The reload lands and pays for what the call drew against it
    _apply(stack, stripe_sim)
    assert _balance(tenant) == Decimal(0)


def test_a_reload_pending_too_long_no_longer_counts(
    client: TestClient, stack: Stack, tenant: Tenant, stripe_sim: Billing
) -> None:
    _save_card(client, stack, tenant, stripe_sim)  # 30
    _settings(client, tenant, enabled=True, threshold="40", package="pkg_10")
    ledger_charge(tenant.account_id, Decimal(35), "call:call_a:MZa:usage:0", False)  # 20 pending
    assert _balance(tenant) == Decimal(-5)
    reload_store.AutoReloadItem(f"A#{tenant.account_id}", reload_store.SK).update(
        actions=[reload_store.AutoReloadItem.pending_since.set(utcnow() - timedelta(minutes=11))]
    )
    with pytest.raises(InsufficientCredits):
        ledger_charge(tenant.account_id, Decimal(1), "call:call_a:MZa:usage:1", False)


def test_a_reload_the_worker_never_managed_to_charge_fails_when_it_dead_letters(
    client: TestClient, stack: Stack, tenant: Tenant, stripe_sim: Billing
) -> None:
    from talkturo.services import dead_letters

    endpoint = _endpoint(tenant)
    _save_card(client, stack, tenant, stripe_sim)  # 30
    _settings(client, tenant, enabled=True, threshold="40", package="pkg_10")
    ((body, _),) = billing_queue.receive(stack)  # the reload's message, never handled
    letter = dead_letters.handle(
        dead_letters.Letter(
            source_arn=stack.arns["BillingEventDeadLetterQueue"],
            message_id="m-reload",
            body=body,
            receive_count=6,
            sent_at=utcnow(),
        )
    )
    assert (letter.account_id, letter.action) == (tenant.account_id, "ended")
    failed = _read(client, tenant)
    assert (failed["state"], failed["last_failure"]["code"]) == ("failed", "charge_failed")
    assert [e["data"]["reason"] for e in _low_events(tenant, endpoint)] == ["auto_reload_failed"]
    assert _reload_charges(stripe_sim, tenant) == []


def test_a_reload_whose_message_was_lost_is_queued_again_by_a_later_draw_and_charged_once(
    client: TestClient, stack: Stack, tenant: Tenant, stripe_sim: Billing
) -> None:
    import boto3

    _save_card(client, stack, tenant, stripe_sim)  # 30
    _settings(client, tenant, enabled=True, threshold="25", package="pkg_10")
    _draw(tenant, "6", "l1")  # 24: reload 1 claimed and queued...
    sqs = boto3.client("sqs", region_name="us-east-1")
    ((_, receipt),) = billing_queue.receive(stack)  # ...and its message lost
    sqs.delete_message(QueueUrl=stack.physical["BillingEventQueue"], ReceiptHandle=receipt)
    _draw(tenant, "1", "l2")  # too soon to tell a lost message from a slow one
    assert billing_queue.receive(stack) == []
    reload_store.AutoReloadItem(f"A#{tenant.account_id}", reload_store.SK).update(
        actions=[reload_store.AutoReloadItem.pending_since.set(utcnow() - timedelta(minutes=11))]
    )
    # Two draws at once later: one of them sends it again
    threads = [threading.Thread(target=_draw, args=(tenant, "1", f"l{n}")) for n in range(3, 6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    queued = [body for body, _ in billing_queue.receive(stack)]
    assert [json.loads(body)["reload"] for body in queued] == [
        {"account_id": tenant.account_id, "sequence": 1}
    ]
    assert billing_queue.invoke(stack, queued) == {"batchItemFailures": []}
    _apply(stack, stripe_sim)
    assert len(_reload_charges(stripe_sim, tenant)) == 1
    assert _balance(tenant) == Decimal(20) + PKG_10_CREDITS
    assert _read(client, tenant)["state"] == "armed"


# ----------------------------------------------------------------------------- the command
# `talkturo billing auto-reload show|on|off` against the API served on loopback: what it
# prints, what it changes, and the API's refusals it passes on.
@pytest.fixture
def api_url(stack: Stack) -> Iterator[str]:
    from talkturo.api.app import create_app

    with served(create_app()) as url:
        yield url


def _cli(api_url: str, tenant: Tenant, *arguments: str) -> Result:
    from talkturo.cli import main

    env = {"TALKTURO_API_URL": api_url, "TALKTURO_API_KEY": tenant.secret}
    return CliRunner().invoke(main, ["billing", "auto-reload", *arguments], env=env)


def test_on_needs_a_saved_card_then_arms_and_off_keeps_the_settings(
    client: TestClient, stack: Stack, tenant: Tenant, stripe_sim: Billing, api_url: str
) -> None:
    # Given an account that never saved a card
    shown = _cli(api_url, tenant, "show")
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith("Auto-reload off: off (auto-reload is off)")
    assert "monthly cap  none" in shown.output and "reloads      0" in shown.output

    # When it is turned on: the API's 409 is printed with its code and the command fails
    refused = _cli(api_url, tenant, "on", "--threshold", "5", "--package", "pkg_10")
    assert refused.exit_code == 1
    assert "no_saved_card" in refused.output and "param: payment_method" in refused.output
    assert _read(client, tenant)["enabled"] is False

    # Once a card is saved (pkg_10 bought with it: 30 credits), it arms
    _save_card(client, stack, tenant, stripe_sim)
    armed = _cli(
        api_url, tenant, "on", "--threshold", "5", "--package", "pkg_10", "--monthly-cap", "100"
    )
    assert armed.exit_code == 0, armed.output
    lines = armed.output.splitlines()
    assert lines[0].startswith("Auto-reload on: armed (a reload is charged when")
    assert "  package      pkg_10: 20.0000 credits for $10.00" in lines
    assert "  threshold    5.0000 credits" in lines
    assert any(
        line.startswith("  monthly cap  100.0000 credits; 0.0000 reloaded in") for line in lines
    )
    settings = _read(client, tenant)
    assert (settings["threshold"], settings["package"], settings["monthly_cap"]) == (
        "5.0000",
        "pkg_10",
        "100.0000",
    )

    # `--monthly-cap none` removes the cap and keeps the rest; off keeps every setting
    uncapped = _cli(api_url, tenant, "on", "--monthly-cap", "none")
    assert uncapped.exit_code == 0, uncapped.output
    assert "  monthly cap  none; " in uncapped.output
    off = _cli(api_url, tenant, "off")
    assert off.exit_code == 0, off.output
    assert off.output.startswith("Auto-reload off: off")
    settings = _read(client, tenant)
    assert (settings["enabled"], settings["threshold"], settings["monthly_cap"]) == (
        False,
        "5.0000",
        None,
    )


def test_a_bad_setting_is_named_and_a_refused_reload_shows_why(
    client: TestClient, stack: Stack, tenant: Tenant, stripe_sim: Billing, api_url: str
) -> None:
    # Given a card that saves fine and is declined on every later charge (30 credits)
    _save_card(client, stack, tenant, stripe_sim, SAVED_THEN_DECLINED)
    wrong = _cli(api_url, tenant, "on", "--threshold", "-3", "--package", "pkg_10")
    assert wrong.exit_code == 1 and "param: threshold" in wrong.output
    wrong = _cli(api_url, tenant, "on", "--threshold", "5", "--package", "custom")
    assert wrong.exit_code == 1 and "param: package" in wrong.output
    assert _read(client, tenant)["enabled"] is False

    # When the threshold is above the balance: it says it charges now, the reload under way
    now = _cli(api_url, tenant, "on", "--threshold", "40", "--package", "pkg_10")
    assert now.exit_code == 0, now.output
    assert now.output.startswith("Auto-reload on: pending")
    assert "Charging now: the balance is already below the threshold." in now.output
    assert "  pending      reload 1 since " in now.output

    # Then the card is refused: show says so, with the bank's reason
    _apply(stack, stripe_sim)
    shown = _cli(api_url, tenant, "show")
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith("Auto-reload on: failed"), shown.output
    assert "  pending" not in shown.output
    failure = _read(client, tenant)["last_failure"]
    assert f"  last failure reload 1 at {failure['at']}: card_declined" in shown.output
