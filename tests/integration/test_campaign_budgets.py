"""Campaign budgets against the emulator: the forecast, the cap that pauses a campaign, the
budget in its progress; and the usage report the same draws feed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from talkturo.domain.budgets import DEFAULT_ANSWERED_SECONDS, DEFAULT_SHARES
from talkturo.domain.calls import CallRecord
from talkturo.domain.common import utcnow
from talkturo.local.template import Stack
from talkturo.services import credits
from talkturo.store import calls as call_store
from talkturo.voice.metering import ledger_charge
from tests.conftest import Tenant
from tests.fake_carrier import FakeCarrier
from tests.integration import calls_setup
from tests.integration.test_campaigns import (
    NUMBER,
    action,
    call_ids,
    contacts,
    create,
    end,
    fast_dials,
    pump,
    read,
)

pytestmark = pytest.mark.integration
__all__ = ["fast_dials"]  # the autouse fixture of the campaign tests applies here too


@pytest.fixture
def line(client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier) -> Any:
    return calls_setup.line(client, stack, tenant, NUMBER)


def _draw(tenant: Tenant, call_id: str, amount: str, block: int = 0) -> None:
    """What the voice session's meter draws for a call: a usage entry keyed on the call."""
    ledger_charge(tenant.account_id, Decimal(amount), f"call:{call_id}:MZ1:usage:{block}", False)


def _charged(credits_charged: Decimal, minutes_ago: int) -> Callable[[CallRecord], CallRecord]:
    def change(record: CallRecord) -> CallRecord:
        created = utcnow() - timedelta(minutes=minutes_ago)
        return record.model_copy(update={"credits_charged": credits_charged, "created_at": created})

    return change


def _rate(client: TestClient, tenant: Tenant, assistant_id: str) -> Decimal:
    got = client.get(f"/v1/assistants/{assistant_id}", headers=tenant.headers).json()
    return Decimal(got["estimated_credits_per_minute"])


def test_the_forecast_before_the_start_uses_the_defaults_and_says_what_is_covered(
    client: TestClient, stack: Stack, tenant: Tenant, line: Any
) -> None:
    # Given a draft campaign of 3 contacts, one attempt each, capped at 0.5 credits
    contacts(client, tenant, 3)
    made = create(client, tenant, line.assistant_id, max_attempts=1, credit_cap="0.5")
    pump(stack)
    assert made["credit_cap"] == "0.5000"
    # When its forecast is asked for
    answer = client.get(f"/v1/campaigns/{made['id']}/forecast", headers=tenant.headers)
    assert answer.status_code == 200, answer.text
    forecast = answer.json()
    # Then it is the audience times one attempt at the assistant's rate over default lengths
    rate = _rate(client, tenant, line.assistant_id)
    per_call = (
        rate
        * Decimal(
            str(
                DEFAULT_SHARES["answered"] * DEFAULT_ANSWERED_SECONDS
                + DEFAULT_SHARES["voicemail"] * 30
            )
        )
        / Decimal(60)
    )
    assert forecast["contacts"] == 3 and forecast["expected_attempts_per_contact"] == 1
    assert forecast["based_on"]["source"] == "defaults"
    assert Decimal(forecast["credits_per_minute"]) == rate
    assert abs(Decimal(forecast["credits"]) - per_call * 3) < Decimal("0.001")
    assert forecast["window_hours_per_day"] == 13.0 and forecast["window_days"] == 1
    # And it says the balance covers it but the cap does not
    assert forecast["balance_covers"] is True and forecast["cap_covers"] is False
    assert forecast["contacts_affordable"] < 3
    # And more attempts raise the forecast
    client.patch(f"/v1/campaigns/{made['id']}", json={"max_attempts": 3}, headers=tenant.headers)
    again = client.get(f"/v1/campaigns/{made['id']}/forecast", headers=tenant.headers).json()
    assert again["expected_attempts_per_contact"] > 1
    assert Decimal(again["credits"]) > Decimal(forecast["credits"])


def test_a_campaign_pauses_itself_at_its_cap_and_resumes_once_it_is_raised(
    client: TestClient, stack: Stack, tenant: Tenant, line: Any, carrier: FakeCarrier
) -> None:
    # Given a running campaign of 3 contacts capped at 1 credit, one call at a time
    contacts(client, tenant, 3)
    made = create(client, tenant, line.assistant_id, credit_cap="1")
    pump(stack)
    assert action(client, tenant, made["id"], "start").status_code == 200
    pump(stack)
    first = call_ids(carrier)[0]
    # When the first call draws 1.5 credits and ends
    _draw(tenant, first, "1")
    _draw(tenant, first, "0.5", block=1)
    end(tenant, first, "completed")
    pump(stack)
    # Then the campaign paused itself at its cap, and dialled nobody else
    shown = read(client, tenant, made["id"])
    assert shown["status"] == "paused" and shown["status_reason"] == "credit_cap"
    assert len(carrier.placed) == 1
    # And its progress shows what it spent and that nothing remains
    budget = client.get(f"/v1/campaigns/{made['id']}/progress", headers=tenant.headers).json()[
        "budget"
    ]
    assert budget["spent"] == "1.5000" and budget["remaining"] == "0.0000"
    assert budget["credit_cap"] == "1.0000"
    # And resuming is refused while the cap is spent
    refused = action(client, tenant, made["id"], "resume")
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "campaign_credit_cap_reached"
    assert refused.json()["error"]["param"] == "credit_cap"
    # When the cap is raised (allowed while paused, and at any time)
    raised = client.patch(
        f"/v1/campaigns/{made['id']}", json={"credit_cap": "5"}, headers=tenant.headers
    )
    assert raised.status_code == 200, raised.text
    assert action(client, tenant, made["id"], "resume").status_code == 200
    pump(stack)
    # Then the next contact is dialled
    assert len(carrier.placed) == 2
    # And removing the cap is a null
    removed = client.patch(
        f"/v1/campaigns/{made['id']}", json={"credit_cap": None}, headers=tenant.headers
    )
    assert removed.json()["credit_cap"] is None


def test_a_running_campaign_shows_its_burn_rate_and_an_eta(
    client: TestClient, stack: Stack, tenant: Tenant, line: Any, carrier: FakeCarrier
) -> None:
    contacts(client, tenant, 4)
    made = create(client, tenant, line.assistant_id, credit_cap="8", max_concurrent_calls=2)
    pump(stack)
    action(client, tenant, made["id"], "start")
    pump(stack)
    placed = call_ids(carrier)
    assert len(placed) == 2
    # The calls' charges land on their records when they close (placed 10 and 20 minutes ago)
    for index, call_id in enumerate(placed):
        _draw(tenant, call_id, "1")
        call_store.change(tenant.account_id, call_id, _charged(Decimal(1), 10 * (index + 1)))
    budget = client.get(f"/v1/campaigns/{made['id']}/progress", headers=tenant.headers).json()[
        "budget"
    ]
    # 2 credits over the 20 minutes since the older call: 6 an hour
    assert budget["spent"] == "2.0000" and budget["remaining"] == "6.0000"
    assert Decimal(budget["burn_rate_per_hour"]) == pytest.approx(Decimal(6), rel=Decimal("0.01"))
    assert budget["eta"] is not None and budget["eta_reason"] in ("completion", "credit_cap")
    assert budget["eta"] > utcnow().isoformat()


def test_usage_is_reported_by_day_assistant_campaign_and_number(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    other_tenant: Tenant,
    line: Any,
    carrier: FakeCarrier,
) -> None:
    # Given a campaign call drawing 1.25 credits, an inbound-like call of the same assistant
    contacts(client, tenant, 1)
    made = create(client, tenant, line.assistant_id)
    pump(stack)
    action(client, tenant, made["id"], "start")
    pump(stack)
    campaign_call = call_ids(carrier)[0]
    _draw(tenant, campaign_call, "1")
    _draw(tenant, campaign_call, "0.25", block=1)
    _draw(tenant, campaign_call, "0.25", block=1)  # a retried write: counted once
    today = utcnow().date().isoformat()

    def usage(group_by: str, who: Tenant = tenant, **query: str) -> dict[str, Any]:
        answer = client.get(
            "/v1/credits/usage",
            params={"group_by": group_by, **query},
            headers=who.headers,
        )
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    # Then each grouping shows the same 1.25 credits of calls
    by_day = usage("day")
    assert by_day["from"] <= today <= by_day["to"]
    assert [(r["key"], r["call_credits"]) for r in by_day["data"]] == [(today, "1.2500")]
    assert by_day["call_credits"] == "1.2500"
    assert [(r["key"], r["credits"]) for r in usage("assistant")["data"]] == [
        (line.assistant_id, "1.2500")
    ]
    assert [(r["key"], r["credits"]) for r in usage("campaign")["data"]] == [(made["id"], "1.2500")]
    by_number = usage("number")["data"]
    assert [(r["key"], r["call_credits"]) for r in by_number] == [(line.number_id, "1.2500")]
    # And the ledger agrees
    ledger = credits.entries(tenant.account_id, limit=100, starting_after=None, kind="usage")
    assert sum(-e.amount for e in ledger.data if e.reference == campaign_call) == Decimal("1.25")
    # And a range that ends before today is empty; a bad range names its parameter
    assert usage("day", **{"from": "2020-01-01", "to": "2020-01-31"})["data"] == []
    url = "/v1/credits/usage"
    bad = client.get(url, params={"from": "2024-02-01", "to": "2024-01-01"}, headers=tenant.headers)
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "to"
    span = {"from": "2020-01-01", "to": "2024-01-01"}
    long = client.get(url, params=span, headers=tenant.headers)
    assert long.status_code == 422 and long.json()["error"]["param"] == "from"
    # And another account sees none of it
    assert usage("day", who=other_tenant)["data"] == []
    assert usage("campaign", who=other_tenant)["credits"] == "0.0000"
