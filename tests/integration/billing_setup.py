"""The Stripe simulator wired to a test's stack: its webhooks reach the platform's webhook
app (served on loopback), the billing adapter talks to it through the stripe SDK."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import stripe

from talkturo import config
from talkturo.billing import factory
from talkturo.local.stripe_sim import StripeSimulator
from talkturo.webhooks.asgi import create_webhook_app
from tests.asgi_server import served


@dataclass
class Billing:
    sim: StripeSimulator
    webhook_url: str

    @property
    def client(self) -> stripe.StripeClient:
        return factory.get_gateway().client

    def settle(self, timeout: float = 10.0) -> None:
        """Every webhook sent so far was answered (or ran out of attempts)."""
        assert self.sim.wait_for_webhooks(timeout), self.sim.deliveries()


@contextlib.contextmanager
def billing(monkeypatch: pytest.MonkeyPatch, *, endpoint: bool = True) -> Iterator[Billing]:
    with StripeSimulator(settle_seconds=0.2) as sim, served(create_webhook_app()) as base:
        monkeypatch.setenv("STRIPE_SECRET_KEY", sim.secret_key)
        monkeypatch.setenv("STRIPE_WEBHOOK_SECRETS", sim.webhook_secret)
        monkeypatch.setenv("STRIPE_API_BASE_URL", sim.url)
        monkeypatch.setenv("PUBLIC_BASE_URL", base)
        config.get_settings.cache_clear()
        factory.reset()
        sim.switches.update(retry_seconds=0.05)
        if endpoint:
            sim.add_endpoint(f"{base}/billing/stripe")
        try:
            yield Billing(sim, f"{base}/billing/stripe")
        finally:
            factory.reset()
            config.get_settings.cache_clear()


@contextlib.contextmanager
def admin_secret(monkeypatch: pytest.MonkeyPatch, secret: str) -> Iterator[dict[str, str]]:
    """The admin API on, with `secret`: the headers that carry it."""
    from talkturo.api import deps

    monkeypatch.setenv("TALKTURO_ADMIN_SECRET", secret)
    config.get_settings.cache_clear()
    deps._admin_secret.cache_clear()
    try:
        yield {"Authorization": f"Bearer {secret}"}
    finally:
        deps._admin_secret.cache_clear()


def signed(
    payload: dict[str, Any] | str, secret: str, timestamp: int | None = None
) -> tuple[bytes, str]:
    """A body and its Stripe-Signature, made with the SDK's own signing."""
    body = payload if isinstance(payload, str) else json.dumps(payload)
    header = stripe.WebhookSignature.generate_signature_header(
        body, secret, timestamp=timestamp if timestamp is not None else int(time.time())
    )
    return body.encode(), header
