"""Test calls: `run_test_call` against a voice service started in-process (the development
model, a scripted transcriber, the tone voice), with no carrier anywhere: the simulated caller
connects to `/media` as the carrier does, signed upgrade and token included."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from talkturo import config
from talkturo.services import credits
from talkturo.services.test_calls import TestCallObservation, run_test_call
from talkturo.simcaller.scripts import parse_script
from talkturo.store import ledger
from talkturo.voice.context import CallContext
from talkturo.voice.providers.llm.dev import DevelopmentModel
from talkturo.voice.providers.scripted import ScriptedTranscriber, ToneVoice
from talkturo.voice.server import ServiceOptions
from talkturo.voice.session import CallProviders, SessionSettings
from tests.conftest import Tenant
from tests.voice.harness import VoiceThread

pytestmark = pytest.mark.integration

TOKEN_SECRET = "test-call-secret"
AUTH_TOKEN = "a" * 32
ACCOUNT_SID = "AC" + "0" * 32


@dataclass
class Voice:
    """The in-process voice service; `lines` are what the transcriber hears, turn by turn."""

    lines: list[str] = field(default_factory=list)
    contexts: list[CallContext] = field(default_factory=list)

    def build(self, context: CallContext, env: dict[str, str]) -> CallProviders:
        self.contexts.append(context)
        return CallProviders(
            llm=DevelopmentModel(),
            transcriber=ScriptedTranscriber(lines=list(self.lines), final_delay=0.35),
            voice=ToneVoice(),
        )


@pytest.fixture
def voice(stack: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[Voice]:
    held = Voice()
    options = ServiceOptions(
        auth_token=lambda: AUTH_TOKEN,  # the upgrade must carry a good X-Twilio-Signature
        token_secret=lambda: TOKEN_SECRET,
        public_url="",
        settings=SessionSettings(meter_increment_seconds=1),
        build_providers=held.build,
    )
    with VoiceThread(options) as thread:
        options.public_url = thread.url
        monkeypatch.setenv("VOICE_SERVICE_URL", thread.url)
        monkeypatch.setenv("VOICE_TOKEN_SECRET", TOKEN_SECRET)
        monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        config.get_settings.cache_clear()
        yield held
    config.get_settings.cache_clear()


def _assistant(client: TestClient, tenant: Tenant, **changes: Any) -> str:
    made = client.post("/v1/assistants", json={"template": "custom"}, headers=tenant.headers)
    assert made.status_code == 201, made.text
    assistant_id = str(made.json()["id"])
    patched = client.patch(f"/v1/assistants/{assistant_id}", json=changes, headers=tenant.headers)
    assert patched.status_code == 200, patched.text
    return assistant_id


def _run(tenant: Tenant, assistant_id: str, steps: list[Any], **kwargs: Any) -> TestCallObservation:
    script = parse_script({"tts": "synthetic", "steps": steps})
    return run_test_call(
        tenant.account_id,
        assistant_id,
        script,
        test_run_id="trun_1",
        scenario=kwargs.pop("scenario", "scenario"),
        **kwargs,
    )


def _spoken(observation: TestCallObservation) -> list[tuple[str, str]]:
    return [(m.role, m.text) for m in observation.transcript if m.role in ("user", "assistant")]


TRANSFER = {
    "type": "transfer_call",
    "config": {"mode": "cold", "destinations": [{"name": "Sales", "number": "+14155550188"}]},
}


def test_the_caller_saying_goodbye_ends_the_call_and_nothing_is_charged(
    client: TestClient, tenant: Tenant, voice: Voice
) -> None:
    assistant_id = _assistant(
        client,
        tenant,
        first_message="Hello, this is Ada.",
        tools=[{"type": "end_call", "config": {"closing_message": "Goodbye from Ada."}}],
    )
    voice.lines = ["Thank you goodbye"]
    before = credits.balance(tenant.account_id).balance
    seen = _run(
        tenant,
        assistant_id,
        [{"wait_for_silence": 0.5}, {"say": "Thank you goodbye"}, {"wait_seconds": 30}],
        scenario="says goodbye",
    )
    assert seen.error is None, seen.error
    assert seen.ended_reason == "assistant_ended"
    tools = [m.name for m in seen.transcript if m.role == "tool"]
    assert tools == ["end_call"], seen.transcript
    assert _spoken(seen)[-1] == ("assistant", "Goodbye from Ada.")
    # The session ended the call and closed the stream (the caller was still on the line).
    assert seen.caller["streams"][0]["outcome"] == "server_closed"
    # The caller heard the greeting, then a reply after its words: one latency per line said.
    assert seen.caller["heard_audio_seconds"] > 1 and not seen.caller["protocol_errors"]
    assert len(seen.turn_latencies_ms) == 1 and 0 < seen.turn_latencies_ms[0] < 5000
    assert seen.metrics is not None and seen.metrics.caller_turns == 1
    # Metered as test seconds, drawn from nobody.
    assert seen.billed_seconds > 0 and seen.duration_seconds > 0
    assert credits.balance(tenant.account_id).balance == before
    assert ledger.call_entries(tenant.account_id, seen.call_id) == []
    # The session knew it was a test call: no carrier sid, placeholder numbers.
    context = voice.contexts[-1]
    assert context.call.carrier_sid is None and context.call.test_run_id == "trun_1"

    # Readable by id like any call; not in the listings.
    got = client.get(f"/v1/calls/{seen.call_id}", headers=tenant.headers).json()
    assert got["test_run_id"] == "trun_1" and got["scenario"] == "says goodbye"
    assert Decimal(str(got["credits_charged"])) == 0
    assert got["billed_seconds"] == 0 and got["test_seconds"] == seen.billed_seconds
    assert got["metrics"]["caller_turns"] == 1
    listed = client.get("/v1/calls", headers=tenant.headers).json()["data"]
    assert listed == []
    by_assistant = client.get(f"/v1/calls?assistant_id={assistant_id}", headers=tenant.headers)
    assert by_assistant.json()["data"] == []
    from talkturo.services import calls

    page = calls.list_calls(tenant.account_id, limit=10, starting_after=None, test_run_id="trun_1")
    assert [c.id for c in page.data] == [seen.call_id]
    transcript = client.get(f"/v1/calls/{seen.call_id}/transcript", headers=tenant.headers)
    assert transcript.status_code == 200
    assert len(transcript.json()["messages"]) == len(seen.transcript)
    assert seen.recording_available
    link = client.get(f"/v1/calls/{seen.call_id}/recording", headers=tenant.headers)
    assert link.status_code == 200, link.text
    assert httpx.get(link.json()["url"]).content[:4] == b"RIFF"


def test_a_transfer_is_simulated_and_the_call_ends_transferred(
    client: TestClient, tenant: Tenant, voice: Voice
) -> None:
    assistant_id = _assistant(client, tenant, first_message="Hi.", tools=[TRANSFER])
    voice.lines = ["Can I talk to a real person"]
    seen = _run(
        tenant,
        assistant_id,
        [{"wait_for_silence": 0.5}, {"say": "Can I talk to a real person"}, {"wait_seconds": 30}],
    )
    assert seen.error is None, seen.error
    assert seen.ended_reason == "transferred" and seen.transferred_to == "Sales"
    assert [m.name for m in seen.transcript if m.role == "tool"] == ["transfer_call"]
    assert any(m.role == "system" and "transferred" in m.text for m in seen.transcript)
    assert not any("no carrier call" in m.text for m in seen.transcript)
    got = client.get(f"/v1/calls/{seen.call_id}", headers=tenant.headers).json()
    assert got["status"] == "ended" and got["ended_reason"] == "transferred"
    assert got["transferred_to"] == "Sales" and got["transfer_status"] == "completed"


def test_a_caller_who_barges_in_cuts_the_assistant_short(
    client: TestClient, tenant: Tenant, voice: Voice
) -> None:
    assistant_id = _assistant(client, tenant, first_message="Hi.")
    voice.lines = ["Tell me about your opening hours and menus", "Wait stop"]
    seen = _run(
        tenant,
        assistant_id,
        [
            {"wait_for_silence": 0.5},
            {"say": "Tell me about your opening hours and menus"},
            {"interrupt": {"text": "Wait stop", "timeout": 10}},
            {"wait_for_silence": 0.5},
            "hang_up",
        ],
    )
    assert seen.error is None, seen.error
    assert seen.ended_reason == "caller_hung_up"
    # The development model's long echo was cut: the transcript keeps what the caller heard.
    cut = [m for m in seen.transcript if m.role == "assistant" and m.interrupted]
    assert len(cut) == 1, seen.transcript
    assert "Wait stop" in [m.text for m in seen.transcript if m.role == "user"]
    assert seen.caller["said"][1]["over_audio"] is True
    assert seen.caller["cleared"], "the voice service cleared the caller's playout"
    assert seen.metrics is not None and seen.metrics.interruptions == 1


def test_an_opt_out_marks_the_test_call_only(
    client: TestClient, tenant: Tenant, voice: Voice
) -> None:
    made = client.post(
        "/v1/contacts",
        json={"first_name": "Jo", "phone": "+14155552671"},
        headers=tenant.headers,
    )
    assert made.status_code == 201, made.text
    contact_id = made.json()["id"]
    assistant_id = _assistant(client, tenant, first_message="Hi Jo.")
    voice.lines = ["Please stop calling me"]
    seen = _run(
        tenant,
        assistant_id,
        [{"wait_for_silence": 0.5}, {"say": "Please stop calling me"}, {"wait_seconds": 30}],
        direction="outbound",
        contact_id=contact_id,
    )
    assert seen.error is None, seen.error
    assert any("opted out" in m.text for m in seen.transcript if m.role == "system")
    got = client.get(f"/v1/calls/{seen.call_id}", headers=tenant.headers).json()
    assert got["opted_out"] is True and got["direction"] == "outbound"
    contact = client.get(f"/v1/contacts/{contact_id}", headers=tenant.headers).json()
    assert contact["do_not_call"] is False
    activity = client.get(f"/v1/contacts/{contact_id}/activity", headers=tenant.headers)
    assert activity.json()["data"] == []
    by_contact = client.get(f"/v1/calls?contact_id={contact_id}", headers=tenant.headers)
    assert by_contact.json()["data"] == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_voice_service_is_an_error_not_a_hang(
    client: TestClient, tenant: Tenant, voice: Voice, monkeypatch: pytest.MonkeyPatch
) -> None:
    assistant_id = _assistant(client, tenant, first_message="Hi.")
    monkeypatch.setenv("VOICE_SERVICE_URL", f"ws://127.0.0.1:{_closed_port()}")
    config.get_settings.cache_clear()
    started = time.monotonic()
    seen = _run(tenant, assistant_id, [{"say": "Hello"}], timeout_seconds=60)
    assert time.monotonic() - started < 20
    assert seen.error is not None and "could not be reached" in seen.error
    assert seen.ended_reason == "error" and seen.transcript == []
    got = client.get(f"/v1/calls/{seen.call_id}", headers=tenant.headers).json()
    assert got["status"] == "ended" and got["error_message"] == seen.error


def test_a_call_that_does_not_end_in_time_is_an_error(
    client: TestClient, tenant: Tenant, voice: Voice
) -> None:
    assistant_id = _assistant(client, tenant, first_message="Hi.")
    started = time.monotonic()
    seen = _run(tenant, assistant_id, [{"wait_seconds": 60}], timeout_seconds=2)
    assert time.monotonic() - started < 15
    assert seen.error is not None and "did not end within 2 s" in seen.error
    assert seen.ended_reason == "error"
    # The session still saved what was said before the stream stopped.
    assert [role for role, _ in _spoken(seen)] == ["assistant"]


def test_a_conversing_caller_says_at_most_max_turns_lines_then_goes_on_with_its_script(
    client: TestClient, tenant: Tenant, voice: Voice, monkeypatch: pytest.MonkeyPatch
) -> None:
    from talkturo.simcaller import voice as caller
    from talkturo.voice.providers.base import TranscriberOptions

    # Given a caller whose next line is always there, heard through a transcriber
    ear = ScriptedTranscriber(lines=["Hi this is Ada"], final_delay=0.1, default_line="More")
    options = TranscriberOptions(model="m", language="en")
    monkeypatch.setattr(caller, "caller_ear", lambda assistant, env=None: (ear, options))
    heard: list[str] = []

    async def next_line(text: str) -> str | None:
        heard.append(text)
        return f"Line {len(heard)}"

    assistant_id = _assistant(client, tenant, first_message="Hi, this is Ada.")
    steps = [{"converse": {"max_turns": 2, "seconds": 0.5}}, {"say": "Bye"}, "hang_up"]
    script = parse_script({"tts": "synthetic", "steps": steps})
    seen = run_test_call(
        tenant.account_id,
        assistant_id,
        script,
        test_run_id="trun_1",
        scenario="converses",
        next_line=next_line,
    )
    assert seen.error is None, seen.error
    # Two lines written from what was heard (the greeting, then the reply), then the script's own
    assert heard == ["Hi this is Ada", "More"]
    assert [line["text"] for line in seen.caller["said"]] == ["Line 1", "Line 2", "Bye"]
    transcribed = [h["transcribed"] for h in seen.caller["heard"] if "transcribed" in h]
    assert transcribed == heard and seen.ended_reason == "caller_hung_up"
