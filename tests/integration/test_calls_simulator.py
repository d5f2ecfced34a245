"""Outbound calls end to end: the API, the dial queue, the real Twilio adapter, the carrier
simulator calling back the webhooks (signed) over real HTTP, and the call record's outcome."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from talkturo import config
from talkturo.api.app import create_app
from talkturo.carrier.factory import set_carrier
from talkturo.carrier.twilio import TwilioCarrier
from talkturo.local.carrier_sim import CarrierSimulator
from talkturo.local.template import Stack
from talkturo.store import calls as call_store
from talkturo.webhooks.asgi import with_carrier_webhooks
from tests.asgi_server import served
from tests.conftest import Tenant
from tests.integration import calls_setup, dial_queue


async def _voice_service(websocket: WebSocket) -> None:
    """A stand-in for the voice service: takes the carrier's media stream until it stops."""
    await websocket.accept()
    with contextlib.suppress(WebSocketDisconnect):
        while json.loads(await websocket.receive_text())["event"] != "stop":
            pass


@pytest.fixture
def network(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[CarrierSimulator]:
    """The simulator as the carrier, and the API + webhooks served on a loopback port."""
    voice_app = Starlette(routes=[WebSocketRoute("/media", _voice_service)])
    api_app = with_carrier_webhooks(create_app())
    with (
        served(voice_app) as voice,
        served(api_app) as api,
        CarrierSimulator(time_scale=0.01) as sim,
    ):
        monkeypatch.setenv("VOICE_SERVICE_URL", voice.replace("http://", "ws://", 1))
        monkeypatch.setenv("PUBLIC_BASE_URL", api)
        monkeypatch.setenv("TWILIO_ACCOUNT_SID", sim.account_sid)
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", sim.auth_token)
        monkeypatch.setenv("VOICE_TOKEN_SECRET", "voice-secret")
        config.get_settings.cache_clear()
        set_carrier(TwilioCarrier(sim.account_sid, sim.auth_token, api_base_url=sim.url))
        try:
            yield sim
        finally:
            set_carrier(None)
            config.get_settings.cache_clear()


@pytest.mark.parametrize(
    ("behaviour", "outcome", "answered_by"),
    [
        ("human", "answered", "human"),
        ("voicemail", "voicemail", "machine"),
        ("no_answer", "no_answer", None),
        ("busy", "busy", None),
        ("failed", "failed", None),
    ],
)
def test_an_outbound_call_ends_with_the_callees_outcome(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    network: CarrierSimulator,
    behaviour: str,
    outcome: str,
    answered_by: str | None,
) -> None:
    # Given an assistant with a number bought at the simulated carrier
    offer = client.get("/v1/phone-numbers/available?country=US&limit=1", headers=tenant.headers)
    line = calls_setup.line(client, stack, tenant, offer.json()["data"][0]["phone_number"])
    callee = "+14155550142"
    network.set_callee(callee, behaviour, ring_seconds=1, talk_seconds=3)
    # When a call is placed and the dialer runs
    made = client.post(
        "/v1/calls",
        json={"assistant_id": line.assistant_id, "to_number": callee},
        headers=tenant.headers,
    )
    assert made.status_code == 201, made.text
    call_id = made.json()["id"]
    assert len(dial_queue.drain(stack)) == 1
    sid = call_store.get(tenant.account_id, call_id).carrier_sid
    assert sid and sid.startswith("CA")
    # And the simulated call ends with every callback delivered
    final = network.wait_for_call(sid, timeout=15)
    callbacks = [e for e in final["events"] if e["kind"] in ("status", "amd", "twiml")]
    assert callbacks and all(e["response_status"] in (200, 204) for e in callbacks), callbacks
    # Then the call record has the right outcome
    got = client.get(f"/v1/calls/{call_id}", headers=tenant.headers).json()
    assert got["status"] == "ended", got
    assert got["outcome"] == outcome and got["answered_by"] == answered_by
    if outcome in ("answered", "voicemail"):
        assert got["answered_at"] and got["duration_seconds"] >= 1
        twiml = [e for e in final["events"] if e["kind"] == "twiml"]
        assert twiml and "<Stream" in final["documents"][0]
        # The call ran its TwiML: the media stream reached the voice service.
        assert final["party"]["streams"][0]["chunks_sent"] > 0
    else:
        assert got["duration_seconds"] == 0 and got["answered_at"] is None


def test_an_extension_is_dialled_to_the_callee_after_it_answers(
    client: TestClient, stack: Stack, tenant: Tenant, network: CarrierSimulator
) -> None:
    offer = client.get("/v1/phone-numbers/available?country=US&limit=1", headers=tenant.headers)
    line = calls_setup.line(client, stack, tenant, offer.json()["data"][0]["phone_number"])
    callee = "+14155550142"
    network.set_callee(callee, "human", ring_seconds=1, talk_seconds=3)
    # When a call to a number with an extension is placed
    made = client.post(
        "/v1/calls",
        json={"assistant_id": line.assistant_id, "to_number": f"{callee} ext. 205"},
        headers=tenant.headers,
    )
    assert made.status_code == 201, made.text
    assert dial_queue.drain(stack)
    call_id = made.json()["id"]
    sid = call_store.get(tenant.account_id, call_id).carrier_sid
    assert sid
    final = network.wait_for_call(sid, timeout=15)
    # Then the carrier dialled the number alone, and the callee heard the extension's keys
    # once it answered (after the one-second pause), before anything else reached it
    heard = final["party"]["heard"]
    assert heard[0] == {"kind": "digits", "digits": "205", "send_digits": "ww205"}
    assert [e for e in heard if e["kind"] == "digits"] == heard[:1]
    got = client.get(f"/v1/calls/{call_id}", headers=tenant.headers).json()
    assert (got["to_number"], got["to_extension"]) == (callee, "205")
