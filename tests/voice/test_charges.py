"""A call is charged exactly what its ledger says: whole calls through the carrier simulator,
with the real ledger made slow so that the caller hangs up while a draw is being written."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from talkturo.domain.common import quantize_credits
from talkturo.local.template import Stack
from talkturo.simcaller.scripts import parse_script
from talkturo.voice.context import CallContext
from talkturo.voice.providers.scripted import ScriptedModel, ScriptedTranscriber, ToneVoice
from talkturo.voice.session import CallProviders, SessionServices, SessionSettings
from tests.conftest import Tenant
from tests.voice.harness import voice_network, wait_for_call_record
from tests.voice.test_conversations import _line

CALLS = 4


class SlowFirstDraw(SessionServices):
    """The real ledger, but each call's first draw is written only once its session is
    finishing: the hang-up has cancelled the meter by then."""

    def __init__(self) -> None:
        self._finishing: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def finishing(self, call_id: str) -> threading.Event:
        with self._lock:
            return self._finishing.setdefault(call_id, threading.Event())

    def charge(self, account_id: str, amount: Decimal, key: str, allow_negative: bool) -> None:
        if key.endswith(":usage:0"):
            assert self.finishing(key.split(":")[1]).wait(timeout=20), "the call never ended"
        super().charge(account_id, amount, key, allow_negative)


class VoiceClosing(ToneVoice):
    """Calls back when the session closes its voice, right after it stopped the meter."""

    def __init__(self, on_close: threading.Event) -> None:
        super().__init__()
        self._on_close = on_close

    async def close(self) -> None:
        self._on_close.set()
        await super().close()


def test_simultaneous_calls_hung_up_mid_draw_are_charged_what_their_ledger_says(
    client: TestClient, stack: Stack, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from talkturo.services import credits

    services = SlowFirstDraw()

    def build(context: CallContext, env: dict[str, str]) -> CallProviders:
        return CallProviders(
            llm=ScriptedModel(),
            transcriber=ScriptedTranscriber(),
            voice=VoiceClosing(services.finishing(context.call.id)),
        )

    settings = SessionSettings(meter_increment_seconds=1.0)
    with voice_network(
        stack, monkeypatch, settings=settings, services=services, build=build
    ) as net:
        line = _line(client, stack, tenant, first_message="Hi.")
        script = parse_script({"steps": [{"wait_seconds": 2.5}, "hang_up"]})
        sids = [net.sim.dial(line.phone_number, script=script) for _ in range(CALLS)]
        for sid in sids:
            net.sim.wait_for_call(sid, timeout=40)
        listed = client.get("/v1/calls?direction=inbound", headers=tenant.headers).json()["data"]
        assert len(listed) == CALLS
        records = [wait_for_call_record(client, tenant.headers, c["id"]) for c in listed]

    rate = Decimal(
        client.get(f"/v1/assistants/{line.assistant_id}", headers=tenant.headers).json()[
            "estimated_credits_per_minute"
        ]
    )
    usage = credits.entries(tenant.account_id, limit=100, starting_after=None, kind="usage").data
    for record in records:
        ledger = -sum((e.amount for e in usage if e.reference == record["id"]), Decimal(0))
        charged = Decimal(record["credits_charged"])
        assert charged == ledger, record["id"]
        # The first block was drawn (late) and counted; the settlement charged the rest.
        keys = {e.idempotency_key.rsplit(":", 1)[-1] for e in usage if e.reference == record["id"]}
        assert keys == {"0", "settle"}
        assert record["billed_seconds"] >= 2
        assert charged == quantize_credits(rate * record["billed_seconds"] / 60)
