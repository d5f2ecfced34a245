"""Stripe webhook received → credits visible, on the local platform's pieces.

`python -m benchmarks.billing` (or `python -m benchmarks billing`): the emulator with
template.yaml's resources, the Stripe simulator sending every event three times in reverse
order (as `talkturo dev` does), the platform's webhook app on loopback and the SQS runner
feeding the billing worker, as the local platform runs them. N payments (30, or
`TALKTURO_BENCH_PAYMENTS`) are made one after another through the SDK-created Checkout; for
each, the time from the first of its webhooks reaching the platform to its purchase entry
being readable in the ledger. Prints p50 and p95.

Then auto-reload, on the same pieces: R reloads (10, or `TALKTURO_BENCH_RELOADS`), each started
by a usage draw that takes the balance below the threshold; for each, the time from that draw
to the reload's credits in the ledger (the billing worker's charge through the SDK, the
simulator's webhooks, the worker's grant), and what the draw itself costs, against a draw
that crosses nothing.
"""

from __future__ import annotations

import logging
import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

PAYMENTS = int(os.environ.get("TALKTURO_BENCH_PAYMENTS", "30"))
RELOADS = int(os.environ.get("TALKTURO_BENCH_RELOADS", "10"))


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _print(label: str, values: list[float]) -> None:
    p50, p95 = _percentile(values, 0.5), _percentile(values, 0.95)
    print(f"  {label:<38} p50 {p50 * 1000:6.0f} ms   p95 {p95 * 1000:6.0f} ms")


def run(payments: int = PAYMENTS, reloads: int = RELOADS) -> None:
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")  # one line per event otherwise
    from benchmarks._aws import sign_up
    from talkturo import config
    from talkturo.billing import factory
    from talkturo.domain.billing import CheckoutCreate, purchase_key
    from talkturo.local.platform import EmulatorComponent, Resources
    from talkturo.local.runner import LONG_WAIT_SECONDS, SqsRunner
    from talkturo.local.stripe_sim import StripeSimulator
    from talkturo.services import billing
    from talkturo.store import ledger
    from talkturo.webhooks import billing as webhook
    from talkturo.webhooks.asgi import create_webhook_app
    from tests.asgi_server import served

    print(f"\nBilling: Stripe webhook received → credits visible, {payments} payments")
    print("  (each event sent 3 times, in reverse order; emulator, one process)\n")
    logging.getLogger("pynamodb").setLevel(logging.WARNING)
    emulator = EmulatorComponent(port=0)
    emulator.start()
    resources = Resources(emulator.emulator, admin_secret="bench", stack_name="bench-billing")
    first_seen: dict[str, float] = {}
    lock = threading.Lock()
    original = webhook.handle

    def timed(headers: Any, body: bytes) -> Any:
        arrived = time.perf_counter()
        answer = original(headers, body)
        text = body.decode("utf-8", errors="replace")
        with lock:
            for intent in pending:
                if intent in text:
                    first_seen.setdefault(intent, arrived)
        return answer

    pending: list[str] = []
    latencies: list[float] = []
    reload_latencies: list[float] = []
    draw_calls: dict[str, str] = {}
    off_draws: list[float] = []
    plain_draws: list[float] = []
    crossing_draws: list[float] = []
    try:
        resources.start()
        assert resources.stack is not None
        runner = SqsRunner(
            resources.stack,
            wait_seconds=LONG_WAIT_SECONDS,
            end_polls=emulator.emulator.end_long_polls,
        )
        with StripeSimulator() as sim, served(create_webhook_app()) as base:
            sim.switches.update(copies=3, reorder=True)
            os.environ.update(
                STRIPE_SECRET_KEY=sim.secret_key,
                STRIPE_WEBHOOK_SECRETS=sim.webhook_secret,
                STRIPE_API_BASE_URL=sim.url,
                PUBLIC_BASE_URL=base,
            )
            config.get_settings.cache_clear()
            factory.reset()
            sim.add_endpoint(f"{base}/billing/stripe")
            webhook.handle = timed  # type: ignore[assignment]
            runner.start()
            account_id, _ = sign_up("Bench billing")
            for n in range(payments):
                session = billing.start_checkout(
                    account_id,
                    CheckoutCreate(package="pkg_10", save_card=n == 0),  # a card for reloads
                    idempotency_key=f"bench-{n}",
                )
                with lock:  # the webhooks wait until the payment is known here
                    sim.pay(session.id)
                    intent = sim.state.objects["checkout.session"][session.id]["payment_intent"]
                    pending.append(intent)
                deadline = time.monotonic() + 30
                while ledger.entry_for_key(account_id, purchase_key(intent)) is None:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the credits of {intent} never came")
                    time.sleep(0.002)
                visible = time.perf_counter()
                with lock:
                    latencies.append(visible - first_seen[intent])
                sim.wait_for_webhooks(30)
            draw_calls = _reloads(
                account_id,
                reloads,
                reload_latencies,
                (off_draws, plain_draws, crossing_draws),
                settle=lambda: sim.wait_for_webhooks(30),
            )
            runner.stop()
    finally:
        webhook.handle = original  # type: ignore[assignment]
        factory.reset()
        resources.stop()
        emulator.stop()
    p50, p95 = _percentile(latencies, 0.5), _percentile(latencies, 0.95)
    print(f"  p50  {p50 * 1000:7.0f} ms")
    print(f"  p95  {p95 * 1000:7.0f} ms")
    mean, worst = statistics.fmean(latencies) * 1000, max(latencies) * 1000
    print(f"  mean {mean:7.0f} ms   max {worst:.0f} ms")
    if reload_latencies:
        print(f"\nAuto-reload: {len(reload_latencies)} reloads of pkg_10, one after another\n")
        _print("usage draw → reload's credits visible", reload_latencies)
        _print("a usage draw (auto-reload off)", off_draws)
        _print("a usage draw (auto-reload armed)", plain_draws)
        _print("the draw that starts a reload", crossing_draws)
        print("  DynamoDB calls of one usage draw:")
        for label, summary in draw_calls.items():
            print(f"    {label}: {summary}")


def _reloads(
    account_id: str,
    count: int,
    latencies: list[float],
    draws: tuple[list[float], list[float], list[float]],
    *,
    settle: Callable[[], object],
) -> dict[str, str]:
    """Each round: a draw above the threshold, then one that crosses it; wait for the reload's
    credits (the item armed again, a sequence further). The DynamoDB calls of each kind of draw."""
    from decimal import Decimal

    from benchmarks.dynamodb_calls import Counter, _summary
    from talkturo.domain.auto_reload import AutoReloadUpdate
    from talkturo.services import auto_reload, credits
    from talkturo.store import auto_reload as reload_store
    from talkturo.store import ledger, table

    counter = Counter()
    table.connection().connection.client.meta.events.register("before-call.dynamodb.*", counter)
    calls: dict[str, str] = {}

    def timed(label: str, into: list[float], amount: Decimal, key: str) -> None:
        counter.take()
        started = time.perf_counter()
        credits.record(account_id, "usage", -amount, idempotency_key=key)
        into.append(time.perf_counter() - started)
        calls.setdefault(label, _summary(counter.take()))

    off, plain, crossing = draws
    for n in range(count):
        timed("auto-reload off", off, Decimal("0.1"), f"bench-off-{n}")
    threshold = ledger.balance(account_id).balance - Decimal(1)
    auto_reload.update(
        account_id, AutoReloadUpdate(enabled=True, threshold=threshold, package="pkg_10")
    )
    for n in range(count):
        settle()  # the last reload's repeated webhooks answered: the draws are timed alone
        timed("auto-reload armed", plain, Decimal("0.1"), f"bench-plain-{n}")
        below = ledger.balance(account_id).balance - threshold + Decimal("0.5")
        timed("the draw that starts a reload", crossing, below, f"bench-cross-{n}")
        started = time.perf_counter() - crossing[-1]
        deadline = time.monotonic() + 30
        while True:
            item = reload_store.get(account_id)
            if item is not None and item.sequence == n + 1 and item.state == "armed":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"reload {n + 1} never landed")
            time.sleep(0.002)
        latencies.append(time.perf_counter() - started)
    table.connection().connection.client.meta.events.unregister("before-call.dynamodb.*", counter)
    return calls


if __name__ == "__main__":
    run()
