"""Stripe webhook received → credits visible, on the local platform's pieces.

`python -m benchmarks.billing` (or `python -m benchmarks billing`): the emulator with
template.yaml's resources, the Stripe simulator sending every event three times in reverse
order (as `talkturo dev` does), the platform's webhook app on loopback and the SQS runner
feeding the billing worker, as the local platform runs them. N payments (30, or
`TALKTURO_BENCH_PAYMENTS`) are made one after another through the SDK-created Checkout; for
each, the time from the first of its webhooks reaching the platform to its purchase entry
being readable in the ledger. Prints p50 and p95.
"""

from __future__ import annotations

import logging
import os
import statistics
import threading
import time
from typing import Any

PAYMENTS = int(os.environ.get("TALKTURO_BENCH_PAYMENTS", "30"))


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run(payments: int = PAYMENTS) -> None:
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
                    account_id, CheckoutCreate(package="pkg_10"), idempotency_key=f"bench-{n}"
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


if __name__ == "__main__":
    run()
