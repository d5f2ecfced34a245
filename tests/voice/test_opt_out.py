"""A caller asking not to be called again, through the carrier simulator: marked do-not-call
during the call (by a phrase, or by the model's opt_out function; inbound and outbound), the
activity kept on the contact, the call record flagged, the confirmation spoken, all exactly
once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from talkturo.domain.assistant_tools import DEFAULT_OPT_OUT_CONFIRMATION
from talkturo.local.template import Stack
from talkturo.simcaller.scripts import parse_script
from talkturo.voice.providers.scripted import tool
from tests.conftest import Tenant
from tests.integration import dial_queue
from tests.voice.harness import VoiceNetwork, voice_network, wait_for_call_record
from tests.voice.test_conversations import _inbound, _line, _transcript

CALLER = "+14155552671"  # the simulator's caller ID for inbound calls


@pytest.fixture
def net(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[VoiceNetwork]:
    with voice_network(stack, monkeypatch) as network:
        yield network


def _contact(client: TestClient, tenant: Tenant) -> str:
    made = client.post(
        "/v1/contacts",
        json={"first_name": "Sam", "phone": CALLER, "lead_status": "qualified"},
        headers=tenant.headers,
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def _activity(client: TestClient, tenant: Tenant, contact_id: str) -> list[dict]:
    got = client.get(f"/v1/contacts/{contact_id}/activity", headers=tenant.headers)
    assert got.status_code == 200, got.text
    return list(got.json()["data"])


def test_a_caller_who_says_stop_calling_me_mid_call_is_marked_dnc_once(
    client: TestClient, stack: Stack, tenant: Tenant, net: VoiceNetwork
) -> None:
    contact_id = _contact(client, tenant)
    line = _line(client, stack, tenant, first_message="Hi, this is Ada from Acme.")
    net.scripted.transcriber.lines = [
        "What is this about",
        "Please stop calling me!",
        "Stop calling me",
    ]
    net.scripted.model.respond = lambda request: ["We have a new offer for you."]
    _, record = _inbound(
        net,
        client,
        tenant,
        line,
        [
            {"wait_for_silence": 0.6},
            {"say": "What is this about"},
            {"wait_for_silence": 0.6},
            {"say": "Please stop calling me"},
            # Said again, over the confirmation: still one opt-out.
            {"interrupt": "Stop calling me"},
            {"wait_for_silence": 2},
        ],
    )
    assert record["opted_out"] is True
    assert record["ended_reason"] == "assistant_ended" and record["outcome"] == "answered"
    contact = client.get(f"/v1/contacts/{contact_id}", headers=tenant.headers).json()
    assert contact["do_not_call"] is True and contact["lead_status"] == "dnc"
    activity = _activity(client, tenant, contact_id)
    assert len(activity) == 1, activity
    assert activity[0]["type"] == "opted_out" and activity[0]["call_id"] == record["id"]
    assert activity[0]["detail"] == 'the caller said "stop calling me"'
    messages = _transcript(client, tenant, record["id"])
    spoken = [m["text"] for m in messages if m["role"] == "assistant"]
    assert spoken == [
        "Hi, this is Ada from Acme.",
        "We have a new offer for you.",
        DEFAULT_OPT_OUT_CONFIRMATION,
    ]
    # The phrase decided it: the model was asked only about the first turn.
    assert len(net.scripted.model.requests) == 1
    notes = [m["text"] for m in messages if m["role"] == "system"]
    assert any(n.startswith("opted out") and contact_id in n for n in notes), notes
    # DNC lifted by hand later keeps the call's record of the opt-out.
    lifted = client.patch(
        f"/v1/contacts/{contact_id}", json={"do_not_call": False}, headers=tenant.headers
    )
    assert lifted.json()["lead_status"] == "qualified"
    assert len(_activity(client, tenant, contact_id)) == 1


def test_the_models_opt_out_function_marks_the_caller_even_without_phrases_or_tools(
    client: TestClient, stack: Stack, tenant: Tenant, net: VoiceNetwork
) -> None:
    contact_id = _contact(client, tenant)
    line = _line(
        client,
        stack,
        tenant,
        first_message="Hi.",
        tools=[],
        opt_out={"phrases": [], "confirmation": "Done, {{contact.first_name}}. Goodbye."},
    )
    net.scripted.transcriber.lines = ["Please never ring this number again"]
    net.scripted.model.respond = lambda request: [tool("opt_out", reason="asked")]
    _, record = _inbound(
        net, client, tenant, line, [{"wait_for_silence": 0.5}, {"say": "Please never ring"}]
    )
    assert record["opted_out"] is True and record["ended_reason"] == "assistant_ended"
    assert [t.name for t in net.scripted.model.requests[0].tools] == ["opt_out"]
    contact = client.get(f"/v1/contacts/{contact_id}", headers=tenant.headers).json()
    assert contact["do_not_call"] is True
    activity = _activity(client, tenant, contact_id)
    assert [(a["call_id"], a["detail"]) for a in activity] == [
        (record["id"], "the assistant's opt_out function")
    ]
    messages = _transcript(client, tenant, record["id"])
    assert any(m["role"] == "tool" and m["name"] == "opt_out" for m in messages)
    spoken = [m["text"] for m in messages if m["role"] == "assistant" and m["text"]]
    assert spoken[-1] == "Done, Sam. Goodbye."


def test_a_contact_called_out_who_opts_out_cannot_be_called_again(
    client: TestClient, stack: Stack, tenant: Tenant, net: VoiceNetwork
) -> None:
    callee = "+14155550143"
    made = client.post(
        "/v1/contacts", json={"first_name": "Kim", "phone": callee}, headers=tenant.headers
    )
    contact_id = made.json()["id"]
    line = _line(client, stack, tenant, first_message="Hi Kim, this is Ada from Acme.")
    steps = [
        {"wait_for_silence": 0.6},
        {"say": "Who is this"},
        {"wait_for_silence": 0.6},
        {"say": "Take me off your list"},
        {"wait_for_silence": 3},
    ]
    net.sim.set_callee(callee, "human", ring_seconds=0.5, script=parse_script({"steps": steps}))
    net.scripted.transcriber.lines = ["Who is this", "Take me off your list"]
    net.scripted.model.respond = lambda request: ["Ada, from Acme."]
    call = client.post(
        "/v1/calls",
        json={"assistant_id": line.assistant_id, "contact_id": contact_id},
        headers=tenant.headers,
    )
    assert call.status_code == 201, call.text
    assert len(dial_queue.drain(stack)) == 1
    record = wait_for_call_record(client, tenant.headers, call.json()["id"], timeout=40)
    assert record["direction"] == "outbound" and record["contact_id"] == contact_id
    assert record["opted_out"] is True
    assert [a["call_id"] for a in _activity(client, tenant, contact_id)] == [record["id"]]
    again = client.post(
        "/v1/calls",
        json={"assistant_id": line.assistant_id, "contact_id": contact_id},
        headers=tenant.headers,
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "contact_do_not_call"
