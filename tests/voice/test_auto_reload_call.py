"""A live call and auto-reload, through the carrier simulator and the voice service: a call
whose credits run out while a reload is on its way goes on (its draws count the pending
reload's credits); once that reload has been pending too long, a call ends for no credits."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from talkturo.domain.common import utcnow
from talkturo.local.template import Stack
from talkturo.services import credits
from talkturo.simcaller.scripts import parse_script
from talkturo.store import auto_reload as reload_store
from talkturo.voice.session import SessionSettings
from tests.conftest import Tenant
from tests.integration import billing_queue
from tests.integration.billing_setup import Billing, billing
from tests.voice.harness import VoiceNetwork, voice_network, wait_for_call_record
from tests.voice.test_conversations import _line

CALL_SECONDS = 8


@pytest.fixture
def stripe_sim(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Billing]:
    with billing(monkeypatch) as wired:
        yield wired


def _call(
    client: TestClient, tenant: Tenant, net: VoiceNetwork, phone_number: str
) -> dict[str, Any]:
    """An inbound call the caller hangs up after CALL_SECONDS (long enough for a call out of
    credits to be ended first, goodbye included); the call as the API shows it."""
    script = parse_script({"steps": [{"wait_seconds": CALL_SECONDS}, "hang_up"]})
    net.sim.wait_for_call(net.sim.dial(phone_number, script=script), timeout=40)
    newest = client.get("/v1/calls?direction=inbound", headers=tenant.headers).json()["data"][0]
    return wait_for_call_record(client, tenant.headers, newest["id"])


def test_a_call_goes_on_while_a_reload_is_on_its_way_and_not_on_a_stale_one(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    stripe_sim: Billing,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a saved card (pkg_10 bought with it) and auto-reload turned on below its threshold:
    # the reload is queued, and nobody charges it during the call
    body = {"package": "pkg_10", "save_card": True}
    answer = client.post("/v1/credits/checkout", json=body, headers=tenant.headers)
    assert stripe_sim.sim.pay(answer.json()["id"])["result"] == "paid"
    stripe_sim.settle()
    billing_queue.drain(stack)
    with voice_network(
        stack, monkeypatch, settings=SessionSettings(meter_increment_seconds=1.0)
    ) as net:
        line = _line(client, stack, tenant, first_message="Hi.")
        rate = Decimal(
            client.get(f"/v1/assistants/{line.assistant_id}", headers=tenant.headers).json()[
                "estimated_credits_per_minute"
            ]
        )
        # And a balance that pays for about one second of the call
        one_second = rate / 60
        balance = credits.balance(tenant.account_id).balance
        credits.record(
            tenant.account_id,
            "adjustment",
            -(balance - one_second),
            idempotency_key="test:low",
        )
        on = client.patch(
            "/v1/credits/auto-reload",
            json={"enabled": True, "threshold": "10", "package": "pkg_10"},
            headers=tenant.headers,
        ).json()
        assert on["state"] == "pending", on

        # When a call is made, the reload still pending
        record = _call(client, tenant, net, line.phone_number)

        # Then it runs its course, drawing against the pending reload
        assert record["ended_reason"] == "caller_hung_up", record
        assert credits.balance(tenant.account_id).balance < 0

        # When the reload has been pending for longer than a reload may count
        reload_store.AutoReloadItem(f"A#{tenant.account_id}", reload_store.SK).update(
            actions=[
                reload_store.AutoReloadItem.pending_since.set(utcnow() - timedelta(minutes=11))
            ]
        )
        credits.record(
            tenant.account_id,
            "grant",
            -credits.balance(tenant.account_id).balance + one_second,
            idempotency_key="test:again",
        )
        second = _call(client, tenant, net, line.phone_number)

        # Then the next call ends for no credits
        assert second["ended_reason"] == "no_credits", second
