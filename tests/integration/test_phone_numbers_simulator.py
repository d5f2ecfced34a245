"""Phone numbers through the real Twilio adapter (twilio SDK) against the carrier simulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from talkturo.carrier.factory import set_carrier
from talkturo.carrier.twilio import TwilioCarrier
from talkturo.local.carrier_sim import CarrierSimulator
from talkturo.local.template import Stack
from talkturo.services import numbers
from talkturo.store import numbers as number_store
from tests.conftest import Tenant
from tests.integration import number_queue


@pytest.fixture
def simulated(stack: Stack) -> Iterator[CarrierSimulator]:
    with CarrierSimulator(time_scale=0.01) as sim:
        set_carrier(TwilioCarrier(sim.account_sid, sim.auth_token, api_base_url=sim.url))
        yield sim
    set_carrier(None)


def test_search_buy_and_release_through_the_simulator(
    client: TestClient, stack: Stack, tenant: Tenant, simulated: CarrierSimulator
) -> None:
    # Given the simulated carrier offers US local numbers
    found = client.get("/v1/phone-numbers/available?country=US&limit=3", headers=tenant.headers)
    assert found.status_code == 200, found.text
    offer = found.json()["data"]
    assert offer and all(n["monthly_price_cents"] == 150 for n in offer)
    # When one is bought and the provisioning worker runs
    chosen = offer[0]["phone_number"]
    bought = client.post("/v1/phone-numbers", json={"phone_number": chosen}, headers=tenant.headers)
    assert bought.status_code == 202, bought.text
    number_queue.drain(stack)
    # Then it is active, held at the carrier under a Twilio-shaped SID
    number_id = bought.json()["id"]
    got = client.get(f"/v1/phone-numbers/{number_id}", headers=tenant.headers).json()
    assert got["status"] == "active", got
    record = numbers.get_record(tenant.account_id, number_id)
    assert record.carrier_sid and record.carrier_sid.startswith("PN")
    # And releasing gives it back (idempotently) and frees the routing item
    for _ in range(2):
        gone = client.delete(f"/v1/phone-numbers/{number_id}", headers=tenant.headers)
        assert gone.status_code == 200 and gone.json()["status"] == "released"
    assert number_store.holder(chosen) is None
