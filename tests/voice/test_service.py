"""The voice service as a server: refusing what is not the carrier, refusing calls it cannot
serve, and draining on shutdown."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from fastapi.testclient import TestClient
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from talkturo.local.template import Stack
from talkturo.voice.server import build_providers
from tests.conftest import Tenant
from tests.voice.harness import voice_network, wait_for_call_record
from tests.voice.test_conversations import _line


def _health(url: str) -> int:
    return httpx.get(url.replace("ws://", "http://") + "/health").status_code


def test_a_stream_without_the_carriers_signature_is_refused(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    with voice_network(stack, monkeypatch) as net:

        async def attempt(headers: dict[str, str]) -> int:
            try:
                async with connect(f"{net.voice.url}/media", additional_headers=headers):
                    return 101
            except InvalidStatus as refused:
                return refused.response.status_code

        assert asyncio.run(attempt({})) == 403
        assert asyncio.run(attempt({"X-Twilio-Signature": "forged"})) == 403
        assert _health(net.voice.url) == 200


def test_a_provider_without_a_key_fails_the_call_with_the_missing_key_named(
    client: TestClient, stack: Stack, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on AWS: no offline stand-ins, no keys.
    monkeypatch.delenv("TALKTURO_OFFLINE_PROVIDERS", raising=False)
    with voice_network(stack, monkeypatch, build=build_providers) as net:
        line = _line(client, stack, tenant, first_message="Hi.")
        sid = net.sim.dial(line.phone_number)
        net.sim.wait_for_call(sid, timeout=20)
        call = client.get("/v1/calls?direction=inbound", headers=tenant.headers).json()["data"][0]
        record = client.get(f"/v1/calls/{call['id']}", headers=tenant.headers).json()
    assert record["status"] == "ended" and record["outcome"] == "failed", record
    assert "OPENAI_API_KEY" in record["error_message"]


def test_draining_takes_no_new_calls_and_lets_the_live_one_finish(
    client: TestClient, stack: Stack, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from talkturo.simcaller.scripts import parse_script

    with voice_network(stack, monkeypatch) as net:
        line = _line(client, stack, tenant, first_message="Hi.")
        net.scripted.transcriber.lines = ["Still here"]
        net.scripted.model.respond = lambda request: ["Good to hear."]
        sid = net.sim.dial(
            line.phone_number,
            script=parse_script(
                {
                    "steps": [
                        {"wait_seconds": 2},
                        {"say": "Still here"},
                        {"wait_for_silence": 0.6},
                        "hang_up",
                    ]
                }
            ),
        )
        # Once the call is live, SIGTERM's drain begins.
        calls: list = []
        for _ in range(100):
            calls = client.get("/v1/calls?direction=inbound", headers=tenant.headers).json()["data"]
            if calls and calls[0]["status"] == "in_progress":
                break
            threading.Event().wait(0.05)
        assert calls and calls[0]["status"] == "in_progress", calls
        drained = asyncio.run_coroutine_threadsafe(net.voice.service.drain(30), net.voice.loop)
        health = [_health(net.voice.url) for _ in range(50) if not net.voice.service.draining]
        assert net.voice.service.draining, health
        assert _health(net.voice.url) == 503
        # The live call goes on to its natural end.
        net.sim.wait_for_call(sid, timeout=30)
        drained.result(timeout=30)
        record = wait_for_call_record(client, tenant.headers, calls[0]["id"])
    assert record["ended_reason"] == "caller_hung_up"
    messages = client.get(f"/v1/calls/{calls[0]['id']}/transcript", headers=tenant.headers)
    spoken = [m["text"] for m in messages.json()["messages"] if m["role"] == "assistant"]
    assert spoken == ["Hi.", "Good to hear."]
